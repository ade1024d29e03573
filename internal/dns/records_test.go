package dns

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithCancel(context.Background())
}

func TestTable_Set(t *testing.T) {
	tab := &Table{}
	if _, ok := tab.Lookup("a.b." + zone + "."); ok {
		t.Error("an empty table has names")
	}
	tab.Set(zone+".", map[string]netip.Addr{"Web1.H.WestUS." + zone: netip.MustParseAddr("10.0.0.1")})
	tests := []struct {
		name   string
		wantIP string
		wantOK bool
	}{
		{"web1.h.westus." + zone + ".", "10.0.0.1", true},
		{"h.westus." + zone + ".", "invalid IP", true},
		{"westus." + zone + ".", "invalid IP", true},
		{zone + ".", "invalid IP", false}, // the apex is the server's
		{"x.westus." + zone + ".", "invalid IP", false},
	}
	for _, tt := range tests {
		ip, ok := tab.Lookup(tt.name)
		if ip.String() != tt.wantIP || ok != tt.wantOK {
			t.Errorf("Lookup(%q) = %v, %v; want %s, %v", tt.name, ip, ok, tt.wantIP, tt.wantOK)
		}
	}
}

// TestRecordSync runs the sync against a real etcd, through informers as
// the server has them, and checks that the table follows groups and
// statuses: running groups with an FQDN and an IP only.
func TestRecordSync(t *testing.T) {
	st := store.New(etcdtest.NewClient(t), "/dnssync/")
	groups := store.NewTyped[types.ContainerGroup](st, types.PrefixGroups)
	statuses := store.NewTyped[types.GroupStatus](st, types.PrefixGroupStatus)
	ctx := t.Context()
	group := func(name, fqdn string) types.ContainerGroup {
		return types.ContainerGroup{Subscription: "s", ResourceGroup: "rg", Name: name, UID: "uid-" + name,
			Spec: types.GroupSpec{IPAddress: &types.IPAddress{Type: "Public", DNSNameLabel: name, FQDN: fqdn}}}
	}
	// One group exists before the sync starts: the list must find it.
	a := group("alpha", "alpha.westus."+zone)
	if _, err := groups.Create(ctx, a.Key(), a); err != nil {
		t.Fatal(err)
	}
	if _, err := statuses.Put(ctx, a.Key(), types.GroupStatus{UID: a.UID, IP: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}

	tab := &Table{}
	sctx, cancel := contextWithCancel(t)
	done := make(chan error, 3)
	gi := controller.NewInformer(controller.StoreSource(groups), controller.InformerOptions{Name: "groups"})
	si := controller.NewInformer(controller.StoreSource(statuses), controller.InformerOptions{Name: "statuses"})
	rs := NewRecordSync(gi, si, zone, tab, slog.Default())
	go func() { done <- gi.Run(sctx) }()
	go func() { done <- si.Run(sctx) }()
	go func() { done <- rs.Run(sctx) }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				t.Errorf("sync: %v", err)
			}
		}
	})

	waitFor := func(name, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			ip, _ := tab.Lookup(name + ".")
			got := ""
			if ip.IsValid() {
				got = ip.String()
			}
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s -> %q after 5s, want %q", name, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("alpha.westus."+zone, "10.0.0.1")

	b := group("bravo", "bravo.westus."+zone)
	rev, err := groups.Create(ctx, b.Key(), b)
	if err != nil {
		t.Fatal(err)
	}
	waitFor("bravo.westus."+zone, "") // no IP yet
	if _, err := statuses.Put(ctx, b.Key(), types.GroupStatus{UID: "uid-older", IP: "10.0.0.9"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	waitFor("bravo.westus."+zone, "") // the status of another incarnation
	if _, err := statuses.Put(ctx, b.Key(), types.GroupStatus{UID: b.UID, IP: "10.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	waitFor("bravo.westus."+zone, "10.0.0.2")

	b.Stopped = true
	if rev, err = groups.Update(ctx, b.Key(), b, rev); err != nil {
		t.Fatal(err)
	}
	waitFor("bravo.westus."+zone, "")
	b.Stopped = false
	if rev, err = groups.Update(ctx, b.Key(), b, rev); err != nil {
		t.Fatal(err)
	}
	waitFor("bravo.westus."+zone, "10.0.0.2")
	b.Deleting = true
	if _, err = groups.Update(ctx, b.Key(), b, rev); err != nil {
		t.Fatal(err)
	}
	waitFor("bravo.westus."+zone, "")

	if err := groups.Delete(ctx, a.Key(), 0); err != nil {
		t.Fatal(err)
	}
	waitFor("alpha.westus."+zone, "")
	if tab.Len() != 0 {
		t.Errorf("table has %d records, want none", tab.Len())
	}
}
