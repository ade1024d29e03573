package apiserver

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

func TestNodeAdmin(t *testing.T) {
	e := newClusterEnv(t)
	ctx := context.Background()
	// The agent registers (which renews its lease); two groups are bound
	// to the node, one elsewhere.
	if st, b := e.call(http.MethodPut, nodeAPIPrefix+"nodes/node-a", types.Node{Zone: "1", Allocatable: types.NodeResources{CPU: 4, MemoryGB: 8}}, testToken, nil); st != http.StatusOK {
		t.Fatalf("register: %d %s", st, b)
	}
	groups := store.NewTyped[types.ContainerGroup](e.store, types.PrefixGroups)
	for name, node := range map[string]string{"web": "node-a", "db": "node-a", "other": "node-b"} {
		g := types.ContainerGroup{Subscription: "sub", ResourceGroup: "rg", Name: name, UID: "uid-" + name, NodeName: node}
		if _, err := groups.Create(ctx, g.Key(), g); err != nil {
			t.Fatal(err)
		}
	}

	var v nodeView
	if st := e.admin(http.MethodGet, nodeAPIPrefix+"nodes/node-a", nil, &v); st != http.StatusOK {
		t.Fatalf("show: status %d", st)
	}
	slices.Sort(v.Groups)
	want := []string{types.GroupKey("sub", "rg", "db"), types.GroupKey("sub", "rg", "web")}
	if v.Node.Name != "node-a" || v.Node.Zone != "1" || v.Lease == nil || !v.Lease.RenewedAt.Equal(e.clock()) || !slices.Equal(v.Groups, want) {
		t.Errorf("show = %+v (lease %+v); want node-a in zone 1, its lease renewed now, groups %v", v.Node, v.Lease, want)
	}

	for _, tc := range []struct {
		name                    string
		verb                    string
		unschedulable, draining bool
	}{
		{"cordon stops placement", "cordon", true, false},
		{"cordon again changes nothing", "cordon", true, false},
		{"drain also moves the groups", "drain", true, true},
		{"uncordon ends the drain too", "uncordon", false, false},
		{"drain an uncordoned node cordons it", "drain", true, true},
		{"uncordon again", "uncordon", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n types.Node
			if st := e.admin(http.MethodPost, nodeAPIPrefix+"nodes/node-a/"+tc.verb, nil, &n); st != http.StatusOK {
				t.Fatalf("%s: status %d", tc.verb, st)
			}
			stored, _, err := store.NewTyped[types.Node](e.store, types.PrefixNodes).Get(ctx, "node-a")
			if err != nil {
				t.Fatal(err)
			}
			for what, got := range map[string]types.Node{"answered": n, "stored": stored} {
				if got.Unschedulable != tc.unschedulable || got.Draining != tc.draining {
					t.Errorf("%s node: unschedulable %v draining %v, want %v %v", what, got.Unschedulable, got.Draining, tc.unschedulable, tc.draining)
				}
			}
			if stored.Zone != "1" || stored.Allocatable.CPU != 4 {
				t.Errorf("the agent's fields were lost: %+v", stored)
			}
		})
	}

	t.Run("a node keeps its cordon when its agent registers again", func(t *testing.T) {
		e.admin(http.MethodPost, nodeAPIPrefix+"nodes/node-a/cordon", nil, nil)
		e.call(http.MethodPut, nodeAPIPrefix+"nodes/node-a", types.Node{Zone: "1"}, testToken, nil)
		var v nodeView
		e.admin(http.MethodGet, nodeAPIPrefix+"nodes/node-a", nil, &v)
		if !v.Node.Unschedulable {
			t.Error("registering uncordoned the node")
		}
	})

	for _, tc := range []struct {
		name, method, path, bearer string
		want                       int
		code                       string
	}{
		{"an unknown node is not found", http.MethodGet, "nodes/node-z", testToken, http.StatusNotFound, "NodeNotFound"},
		{"cordoning an unknown node is not found", http.MethodPost, "nodes/node-z/cordon", testToken, http.StatusNotFound, "NodeNotFound"},
		{"draining an unknown node is not found", http.MethodPost, "nodes/node-z/drain", testToken, http.StatusNotFound, "NodeNotFound"},
		{"a bad node name is refused", http.MethodPost, "nodes/Node_A/cordon", testToken, http.StatusBadRequest, "InvalidNodeName"},
		{"a tenant may not show a node", http.MethodGet, "nodes/node-a", tenantToken, http.StatusForbidden, "AuthorizationFailed"},
		{"a tenant may not cordon", http.MethodPost, "nodes/node-a/cordon", tenantToken, http.StatusForbidden, "AuthorizationFailed"},
		{"a tenant may not uncordon", http.MethodPost, "nodes/node-a/uncordon", tenantToken, http.StatusForbidden, "AuthorizationFailed"},
		{"a tenant may not drain", http.MethodPost, "nodes/node-a/drain", tenantToken, http.StatusForbidden, "AuthorizationFailed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b := e.call(tc.method, nodeAPIPrefix+tc.path, nil, tc.bearer, nil)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, b)
			}
			if code, msg := armErr(t, b); code != tc.code {
				t.Errorf("code %s (%s), want %s", code, msg, tc.code)
			}
		})
	}
}
