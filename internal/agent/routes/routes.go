// Package routes keeps the node's routes to the groups that run on other
// nodes: one route per group address, via the address of the group's node
// ("host-gw" routing, without encapsulation). Group addresses are unique in
// the cluster and every node has the same subnets on its bridges, so a
// group's address is routed to whichever node runs it.
//
// The routes live in the main table of the network namespace of the
// calling thread, through netlink. They are tagged with Berth's routing
// protocol number and the Table's metric; a Table only ever changes or
// deletes routes that carry both, so the routes of the kernel, of DHCP, of
// an operator or of another Table are left alone.
package routes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Protocol is the routing protocol number Berth tags its routes with (`ip
// route show proto 183`). It is unassigned in the kernel's rtnetlink.h and
// in iproute2's rt_protos (FRR takes 186-192, bird 12, babel 42).
const Protocol netlink.RouteProtocol = 0xB7

// DefaultMetric is the metric of a Table's routes unless it is given one.
// Group routes are /32s, more specific than any connected subnet, so the
// metric only matters against another route to the same address, which
// keeps its own metric (0 unless set) and therefore wins: Berth never
// shadows a route it did not make.
const DefaultMetric = 183

// dumpRetries bounds the retries of a route dump the kernel interrupted
// because the table changed meanwhile.
const dumpRetries = 5

// Route sends the traffic for Dst via Via, the address of the node that
// runs the group.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

func (r Route) String() string { return r.Dst.String() + " via " + r.Via.String() }

// Table owns the routes of the main table that carry Protocol and its
// metric.
type Table struct {
	metric int
}

// New returns the Table whose routes carry metric; 0 means DefaultMetric.
// Agents that share a network namespace (several servers on one host, in
// tests) need distinct metrics, or each would delete the other's routes.
func New(metric int) *Table {
	if metric <= 0 {
		metric = DefaultMetric
	}
	return &Table{metric: metric}
}

// Metric is the metric of the Table's routes.
func (t *Table) Metric() int { return t.metric }

// List returns the Table's routes in the current network namespace, sorted
// by destination.
func (t *Table) List(ctx context.Context) ([]Route, error) {
	all, err := listMain(ctx)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, r := range all {
		if t.owns(r) {
			if rt, ok := fromNetlink(r); ok {
				out = append(out, rt)
			}
		}
	}
	slices.SortFunc(out, func(a, b Route) int { return a.Dst.Addr().Compare(b.Dst.Addr()) })
	return out, nil
}

// Sync makes the Table's routes in the current network namespace exactly
// want: it adds missing routes, replaces those whose Via changed and
// deletes the ones not wanted. A route it cannot install (its Via is not
// reachable, or a route of someone else holds its destination and metric)
// does not stop the others; the errors are joined.
func (t *Table) Sync(ctx context.Context, want []Route) error {
	wanted, err := normalize(want)
	if err != nil {
		return err
	}
	all, err := listMain(ctx)
	if err != nil {
		return err
	}
	have := map[netip.Prefix]netlink.Route{}
	foreign := map[netip.Prefix]bool{}
	for _, r := range all {
		if r.Priority != t.metric {
			continue
		}
		dst := dstOf(r)
		if t.owns(r) {
			have[dst] = r
		} else {
			foreign[dst] = true
		}
	}

	var errs []error
	for _, w := range wanted {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if cur, ok := have[w.Dst]; ok {
			if rt, ok := fromNetlink(cur); ok && rt == w {
				continue
			}
		} else if foreign[w.Dst] {
			errs = append(errs, fmt.Errorf("route %s: a route of another owner has its destination and metric %d: %w", w, t.metric, errdefs.ErrAlreadyExists))
			continue
		}
		if err := netlink.RouteReplace(t.toNetlink(w)); err != nil {
			errs = append(errs, fmt.Errorf("replace route %s: %w", w, classify(err)))
		}
	}
	for dst, r := range have {
		if _, ok := wanted[dst]; ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		// The listed route carries protocol and metric, which the kernel
		// matches: only this route goes.
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", dst, classify(err)))
		}
	}
	return errors.Join(errs...)
}

func (t *Table) owns(r netlink.Route) bool {
	return r.Protocol == Protocol && r.Priority == t.metric && r.Table == unix.RT_TABLE_MAIN
}

func (t *Table) toNetlink(r Route) *netlink.Route {
	return &netlink.Route{
		Dst:      &net.IPNet{IP: net.IP(r.Dst.Addr().AsSlice()), Mask: net.CIDRMask(r.Dst.Bits(), 32)},
		Gw:       net.IP(r.Via.AsSlice()),
		Protocol: Protocol,
		Priority: t.metric,
		Table:    unix.RT_TABLE_MAIN,
	}
}

// normalize validates want and keys it by destination.
func normalize(want []Route) (map[netip.Prefix]Route, error) {
	out := make(map[netip.Prefix]Route, len(want))
	for _, r := range want {
		if !r.Dst.IsValid() || !r.Dst.Addr().Is4() || !r.Via.Is4() {
			return nil, fmt.Errorf("route %s: want an IPv4 destination and gateway: %w", r, errdefs.ErrInvalidArgument)
		}
		r.Dst = r.Dst.Masked()
		if prev, ok := out[r.Dst]; ok && prev != r {
			return nil, fmt.Errorf("routes %s and %s: one destination, two gateways: %w", prev, r, errdefs.ErrInvalidArgument)
		}
		out[r.Dst] = r
	}
	return out, nil
}

// listMain dumps the IPv4 routes of the main table. A dump interrupted by a
// concurrent change may be inconsistent, so it is taken again.
func listMain(ctx context.Context) ([]netlink.Route, error) {
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err == nil {
			return rs, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) || i == dumpRetries {
			return nil, fmt.Errorf("list routes: %w", err)
		}
	}
}

// dstOf is the destination of r; the kernel reports a default route
// without one.
func dstOf(r netlink.Route) netip.Prefix {
	if r.Dst == nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}
	}
	bits, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits)
}

// fromNetlink reads a single-path route with a gateway.
func fromNetlink(r netlink.Route) (Route, bool) {
	via, ok := netip.AddrFromSlice(r.Gw)
	if !ok {
		return Route{}, false
	}
	return Route{Dst: dstOf(r), Via: via.Unmap()}, true
}

// classify marks the errors a caller can act on: a gateway that is not
// on-link or routable is the caller's to fix.
func classify(err error) error {
	switch {
	case errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.EHOSTUNREACH):
		return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
	}
	return err
}
