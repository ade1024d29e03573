package lifecycle_test

import (
	"fmt"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/controllers/controllertest"
	"github.com/berth-dev/berth/internal/controllers/lifecycle"
	"github.com/berth-dev/berth/internal/types"
)

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := controllertest.Start(t)
	ctx := t.Context()
	// make stores a deleting group with its status, address and DNS claims.
	n := 0
	makeGroup := func(name, node string, tornDown bool) types.ContainerGroup {
		t.Helper()
		n++
		g := controllertest.Group(name, 1, 1)
		g.NodeName, g.IP, g.Deleting = node, fmt.Sprintf("10.88.0.%d", 10+n), true
		g.Spec.IPAddress = &types.IPAddress{Type: "Public", DNSNameLabel: name, FQDN: name + ".westeurope.berth.internal"}
		for _, err := range []error{
			must(e.Groups.Create(ctx, g.Key(), g)),
			must(e.Statuses.Put(ctx, g.Key(), types.GroupStatus{UID: g.UID, NodeName: node, TornDown: tornDown})),
			must(e.IPClaims.Create(ctx, types.IPClaimKey(types.PublicNetwork, g.IP), types.IPClaim{IP: g.IP, GroupKey: g.Key(), GroupUID: g.UID})),
			must(e.DNSNames.Create(ctx, g.Spec.IPAddress.FQDN, types.DNSName{FQDN: g.Spec.IPAddress.FQDN, GroupKey: g.Key(), GroupUID: g.UID})),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		return g
	}
	unbound := makeGroup("unbound", "", false)
	tornDown := makeGroup("torndown", "n1", true)
	running := makeGroup("running", "n1", false)
	stale := types.IPClaim{IP: "10.88.7.7", GroupKey: "sub/rg/gone", GroupUID: "uid-gone"}
	if _, err := e.IPClaims.Create(ctx, types.IPClaimKey(types.PublicNetwork, stale.IP), stale); err != nil {
		t.Fatal(err)
	}
	e.Run(t, lifecycle.New(lifecycle.Options{Store: e.Store, Informers: e.Informers}))

	gone := func(g types.ContainerGroup) (bool, string) {
		_, _, gerr := e.Groups.Get(ctx, g.Key())
		_, _, serr := e.Statuses.Get(ctx, g.Key())
		_, _, ierr := e.IPClaims.Get(ctx, types.IPClaimKey(types.PublicNetwork, g.IP))
		_, _, derr := e.DNSNames.Get(ctx, g.Spec.IPAddress.FQDN)
		all := errdefs.IsNotFound(gerr) && errdefs.IsNotFound(serr) && errdefs.IsNotFound(ierr) && errdefs.IsNotFound(derr)
		return all, fmt.Sprintf("group %v, status %v, ip claim %v, dns claim %v", gerr, serr, ierr, derr)
	}
	t.Run("a deleted group without a node goes at once with its status and claims", func(t *testing.T) {
		controllertest.Eventually(t, "unbound is gone", func() (bool, string) { return gone(unbound) })
	})
	t.Run("a deleted group whose agent reported it torn down goes", func(t *testing.T) {
		controllertest.Eventually(t, "torndown is gone", func() (bool, string) { return gone(tornDown) })
	})
	t.Run("a deleted group still on its node waits for its agent, then goes", func(t *testing.T) {
		if ok, _ := gone(running); ok {
			t.Fatal("removed before its agent tore it down")
		}
		if _, err := e.Statuses.Put(ctx, running.Key(), types.GroupStatus{UID: running.UID, NodeName: "n1", TornDown: true}); err != nil {
			t.Fatal(err)
		}
		controllertest.Eventually(t, "running is gone", func() (bool, string) { return gone(running) })
	})
	t.Run("an address claim whose group is gone is freed", func(t *testing.T) {
		controllertest.Eventually(t, "the stale claim is gone", func() (bool, string) {
			_, _, err := e.IPClaims.Get(ctx, types.IPClaimKey(types.PublicNetwork, stale.IP))
			return errdefs.IsNotFound(err), fmt.Sprint(err)
		})
	})
}

func must(_ int64, err error) error { return err }
