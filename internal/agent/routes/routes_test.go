package routes_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/agent/routes"
	"github.com/berth-dev/berth/internal/testenv"
)

// inNetNS returns a runner of functions in a network namespace of its own,
// made for t and removed when t ends, with a veth "up0" on 192.0.2.1/24 to
// route over. The functions run on a locked thread of another goroutine:
// they report with t.Errorf and return an error to stop the test.
func inNetNS(t *testing.T) func(t *testing.T, fn func() error) {
	t.Helper()
	testenv.RequireRoot(t)
	n, err := netns.NewNetNS(t.TempDir())
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Remove(); err != nil {
			t.Errorf("remove netns: %v", err)
		}
	})
	h, err := ns.GetNS(n.GetPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	run := func(t *testing.T, fn func() error) {
		t.Helper()
		if err := h.Do(func(ns.NetNS) error { return fn() }); err != nil {
			t.Fatal(err)
		}
	}
	run(t, func() error {
		link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up1"}
		if err := netlink.LinkAdd(link); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		addr, _ := netlink.ParseAddr("192.0.2.1/24")
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add address: %w", err)
		}
		for _, name := range []string{"up0", "up1"} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return fmt.Errorf("set %s up: %w", name, err)
			}
		}
		return nil
	})
	return run
}

func route(dst, via string) routes.Route {
	return routes.Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(via)}
}

// mainRoutes lists the IPv4 routes of the main table, to check that
// foreign routes are untouched.
func mainRoutes(t *testing.T) []netlink.Route {
	t.Helper()
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Errorf("list routes: %v", err)
	}
	return rs
}

func hasRoute(rs []netlink.Route, dst, via string, proto netlink.RouteProtocol, metric int) bool {
	return slices.ContainsFunc(rs, func(r netlink.Route) bool {
		return r.Dst != nil && r.Dst.String() == dst && r.Gw.String() == via && r.Protocol == proto && r.Priority == metric
	})
}

func addForeign(dst, via string, metric int) error {
	_, ipn, err := net.ParseCIDR(dst)
	if err != nil {
		return err
	}
	r := &netlink.Route{Dst: ipn, Gw: net.ParseIP(via), Protocol: unix.RTPROT_STATIC, Priority: metric}
	if err := netlink.RouteAdd(r); err != nil {
		return fmt.Errorf("add foreign route %s: %w", dst, err)
	}
	return nil
}

func TestTable_Sync(t *testing.T) {
	run := inNetNS(t)
	ctx := context.Background()
	tbl := routes.New(0)

	run(t, func() error {
		// Routes of others: the operator's to another address, the
		// operator's to a group address (its own metric), and another
		// Table's.
		if err := addForeign("10.88.0.99/32", "192.0.2.50", 0); err != nil {
			return err
		}
		if err := addForeign("10.88.0.3/32", "192.0.2.60", 0); err != nil {
			return err
		}
		other := routes.New(routes.DefaultMetric + 1)
		if err := other.Sync(ctx, []routes.Route{route("10.88.0.4/32", "192.0.2.70")}); err != nil {
			return fmt.Errorf("Sync of the other table: %w", err)
		}
		return nil
	})

	// Subtests run on goroutines of their own: each enters the namespace
	// itself.
	t.Run("it installs the wanted routes tagged as Berth's", func(t *testing.T) {
		run(t, func() error {
			want := []routes.Route{route("10.88.0.3/32", "192.0.2.2"), route("10.88.0.4/32", "192.0.2.3")}
			if err := tbl.Sync(ctx, want); err != nil {
				return fmt.Errorf("Sync: %w", err)
			}
			rs := mainRoutes(t)
			for _, w := range want {
				if !hasRoute(rs, w.Dst.String(), w.Via.String(), routes.Protocol, routes.DefaultMetric) {
					t.Errorf("route %s is missing: %v", w, rs)
				}
			}
			got, err := tbl.List(ctx)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("List = %v, %v; want %v", got, err, want)
			}
			return nil
		})
	})

	t.Run("a changed gateway replaces the route and an unwanted one goes", func(t *testing.T) {
		run(t, func() error {
			want := []routes.Route{route("10.88.0.3/32", "192.0.2.9")}
			if err := tbl.Sync(ctx, want); err != nil {
				return fmt.Errorf("Sync: %w", err)
			}
			got, err := tbl.List(ctx)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("List = %v, %v; want %v", got, err, want)
			}
			return nil
		})
	})

	t.Run("routes of others are untouched", func(t *testing.T) {
		run(t, func() error {
			rs := mainRoutes(t)
			for _, f := range []struct {
				dst, via string
				proto    netlink.RouteProtocol
				metric   int
			}{
				{"10.88.0.99/32", "192.0.2.50", unix.RTPROT_STATIC, 0},
				{"10.88.0.3/32", "192.0.2.60", unix.RTPROT_STATIC, 0},
				{"10.88.0.4/32", "192.0.2.70", routes.Protocol, routes.DefaultMetric + 1},
			} {
				if !hasRoute(rs, f.dst, f.via, f.proto, f.metric) {
					t.Errorf("route %s via %s (proto %d metric %d) is gone: %v", f.dst, f.via, f.proto, f.metric, rs)
				}
			}
			return nil
		})
	})

	t.Run("syncing nothing deletes only the table's routes", func(t *testing.T) {
		run(t, func() error {
			if err := tbl.Sync(ctx, nil); err != nil {
				return fmt.Errorf("Sync: %w", err)
			}
			if got, err := tbl.List(ctx); err != nil || len(got) != 0 {
				t.Errorf("List = %v, %v; want none", got, err)
			}
			rs := mainRoutes(t)
			if !hasRoute(rs, "10.88.0.99/32", "192.0.2.50", unix.RTPROT_STATIC, 0) || !hasRoute(rs, "10.88.0.4/32", "192.0.2.70", routes.Protocol, routes.DefaultMetric+1) {
				t.Errorf("a route of others is gone: %v", rs)
			}
			return nil
		})
	})

	t.Run("a route that cannot be installed does not stop the others", func(t *testing.T) {
		run(t, func() error {
			// 198.51.100.1 is on no link; 10.88.0.7 at the table's metric
			// belongs to the operator.
			if err := addForeign("10.88.0.7/32", "192.0.2.80", routes.DefaultMetric); err != nil {
				return err
			}
			err := tbl.Sync(ctx, []routes.Route{route("10.88.0.5/32", "198.51.100.1"), route("10.88.0.6/32", "192.0.2.2"), route("10.88.0.7/32", "192.0.2.2")})
			if !errdefs.IsFailedPrecondition(err) || !errdefs.IsAlreadyExists(err) {
				t.Errorf("Sync = %v, want a failed precondition (unreachable gateway) and already exists (foreign route)", err)
			}
			got, _ := tbl.List(ctx)
			if want := []routes.Route{route("10.88.0.6/32", "192.0.2.2")}; !slices.Equal(got, want) {
				t.Errorf("List = %v, want %v", got, want)
			}
			if rs := mainRoutes(t); !hasRoute(rs, "10.88.0.7/32", "192.0.2.80", unix.RTPROT_STATIC, routes.DefaultMetric) {
				t.Errorf("the operator's route at the table's metric was changed: %v", rs)
			}
			return nil
		})
	})
}

func TestTable_SyncRefusesBadRoutes(t *testing.T) {
	tests := []struct {
		name string
		want []routes.Route
	}{
		{"an IPv6 destination", []routes.Route{route("fd00::1/128", "192.0.2.2")}},
		{"an IPv6 gateway", []routes.Route{route("10.88.0.3/32", "fd00::1")}},
		{"a missing gateway", []routes.Route{{Dst: netip.MustParsePrefix("10.88.0.3/32")}}},
		{"one destination via two gateways", []routes.Route{route("10.88.0.3/32", "192.0.2.2"), route("10.88.0.3/32", "192.0.2.3")}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			// Refused before netlink is asked, so no namespace is needed.
			if err := routes.New(0).Sync(context.Background(), tt.want); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Sync = %v, want invalid argument", err)
			}
		})
	}
}
