package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/apiserver"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/join"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

const nodeTestToken = "admin-token-for-node-tests"

// startNodeAPI runs an API server with the node protocol and join tokens
// on a throw-away etcd, and points the CLI's config at it.
func startNodeAPI(t *testing.T) *store.Store {
	t.Helper()
	st := store.New(etcdtest.NewClient(t), "/cli-test/")
	api := apiserver.New(apiserver.Options{
		Store: st, Token: nodeTestToken,
		Nodes:      nodeplane.NewServer(nodeplane.ServerOptions{Store: st}),
		JoinTokens: join.New(st, nil),
	})
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.json")
	if err := client.SaveConfig(cfg, &client.Config{Endpoint: srv.URL, CAFile: caFile, Token: nodeTestToken}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(client.ConfigEnv, cfg)
	return st
}

// berth runs the CLI and returns its exit code, stdout and stderr.
func berth(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestNodeCommands(t *testing.T) {
	st := startNodeAPI(t)
	ctx := context.Background()

	// Tokens.
	code, out, stderr := berth(t, "node", "token", "create", "--ttl", "2h", "--description", "rack-4")
	if code != 0 || !regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}\n$`).MatchString(out) {
		t.Fatalf("token create: exit %d, out %q, err %q; want the token alone", code, out, stderr)
	}
	id := join.ID(strings.TrimSpace(out))
	code, out, _ = berth(t, "node", "token", "create", "-o", "json")
	var created map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil || created["token"] == nil || created["expiresAt"] == nil {
		t.Errorf("token create -o json: exit %d, %q", code, out)
	}
	code, out, _ = berth(t, "node", "token", "list")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "rack-4") || !strings.Contains(out, "Valid") {
		t.Errorf("token list: exit %d:\n%s", code, out)
	}
	if code, _, stderr = berth(t, "node", "token", "create", "--ttl", "200h"); code != exitUsage {
		t.Errorf("token create --ttl 200h: exit %d (%s), want a usage error", code, stderr)
	}
	if code, _, stderr = berth(t, "node", "token", "delete", id); code != 0 || stderr != "" {
		t.Errorf("token delete: exit %d, %q", code, stderr)
	}
	if code, _, stderr = berth(t, "node", "token", "delete", id); code != 0 || !strings.Contains(stderr, "no join token "+id) {
		t.Errorf("token delete again: exit %d, %q; want a warning", code, stderr)
	}

	// Nodes: one ready with a group, one that never renewed its lease.
	nodes := store.NewTyped[types.Node](st, types.PrefixNodes)
	now := time.Now().UTC()
	for _, n := range []types.Node{
		{Name: "node-a", Zone: "1", Allocatable: types.NodeResources{CPU: 4, MemoryGB: 7.5}, CreatedAt: now.Add(-3 * time.Hour),
			Conditions: []types.NodeCondition{{Type: types.NodeReady, Status: types.ConditionTrue}}},
		{Name: "node-b", Zone: "2", Allocatable: types.NodeResources{CPU: 2, MemoryGB: 23.54010009765625}, CreatedAt: now.Add(-72 * time.Hour),
			Conditions: []types.NodeCondition{{Type: types.NodeReady, Status: types.ConditionFalse}}},
	} {
		if _, err := nodes.Create(ctx, n.Name, n); err != nil {
			t.Fatal(err)
		}
	}
	g := types.ContainerGroup{Subscription: "sub", ResourceGroup: "rg", Name: "web", UID: "u1", NodeName: "node-a"}
	if _, err := store.NewTyped[types.ContainerGroup](st, types.PrefixGroups).Create(ctx, g.Key(), g); err != nil {
		t.Fatal(err)
	}

	if code, out, stderr = berth(t, "node", "cordon", "node-a"); code != 0 || out != "node node-a cordoned\n" {
		t.Errorf("cordon: exit %d, %q, %q", code, out, stderr)
	}
	code, out, stderr = berth(t, "node", "list")
	if code != 0 {
		t.Fatalf("node list: exit %d: %s", code, stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Name\s+Status\s+Zone\s+CPU\s+MemoryGB\s+Groups\s+Age$`),
		regexp.MustCompile(`(?m)^node-a\s+Ready,SchedulingDisabled\s+1\s+4\s+7.5\s+1\s+3h$`),
		// A machine's memory, to two decimals.
		regexp.MustCompile(`(?m)^node-b\s+NotReady\s+2\s+2\s+23.54\s+0\s+3d$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("node list does not match %s:\n%s", want, out)
		}
	}

	code, out, _ = berth(t, "node", "show", "node-a")
	var v nodeView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Node.Name != "node-a" || !v.Node.Unschedulable || len(v.Groups) != 1 || v.Groups[0] != g.Key() {
		t.Errorf("node show: exit %d:\n%s", code, out)
	}
	if code, out, _ = berth(t, "node", "list", "--query", "[?node.zone=='2'].node.name", "-o", "tsv"); code != 0 || out != "node-b\n" {
		t.Errorf("node list --query: exit %d, %q", code, out)
	}

	if code, out, _ = berth(t, "node", "drain", "node-a"); code != 0 || !strings.HasPrefix(out, "node node-a draining") {
		t.Errorf("drain: exit %d, %q", code, out)
	}
	if n, _, _ := nodes.Get(ctx, "node-a"); !n.Draining || !n.Unschedulable {
		t.Errorf("after drain: %+v", n)
	}
	if code, _, _ = berth(t, "node", "uncordon", "node-a"); code != 0 {
		t.Errorf("uncordon: exit %d", code)
	}
	if n, _, _ := nodes.Get(ctx, "node-a"); n.Draining || n.Unschedulable {
		t.Errorf("after uncordon: %+v", n)
	}

	code, _, stderr = berth(t, "node", "show", "node-z")
	if code != exitError || !strings.Contains(stderr, "Code: NodeNotFound") {
		t.Errorf("show of an unknown node: exit %d, %q", code, stderr)
	}
	if code, _, stderr = berth(t, "node", "show"); code != exitUsage {
		t.Errorf("show without a name: exit %d, %q", code, stderr)
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:     "0s",
		45 * time.Second: "45s",
		12 * time.Minute: "12m",
		5 * time.Hour:    "5h",
		47 * time.Hour:   "47h",
		72 * time.Hour:   "3d",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%s) = %s, want %s", d, got, want)
		}
	}
}
