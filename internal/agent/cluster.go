package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/agent/firewall"
	"github.com/berth-dev/berth/internal/agent/routes"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

// The node's networking in a cluster. Every group's address is allocated
// for the whole cluster and every node has the same subnets on its
// bridges, so a group on another node is one /32 route away, via that
// node's first address (package routes; the bridges answer ARP for those
// addresses, package network). The firewall is fed the other nodes' groups
// too, so that the isolation of groups (virtual networks apart,
// subscriptions apart, only declared ports) holds between nodes.
//
// One controller over two informers, the cluster's endpoints and its
// nodes, does both with a single key: every pass computes the whole route
// set and the whole other-nodes half of the firewall, so a missed event
// or a restart never leaves a stale route or rule. The node's own groups
// stay with syncFirewall, from the attachments on disk: the node never
// waits on the control plane to filter what is on its bridges.

// clusterKey is the one key of the cluster network controller.
const clusterKey = "cluster"

// routeTable keeps the node's routes to groups on other nodes;
// routes.Table.
type routeTable interface {
	Sync(ctx context.Context, want []routes.Route) error
}

// clusterFirewall takes the other nodes' half of the firewall's State;
// firewall.Firewall.
type clusterFirewall interface {
	ApplyCluster(ctx context.Context, st firewall.State) error
}

var (
	_ routeTable      = (*routes.Table)(nil)
	_ clusterFirewall = (*firewall.Firewall)(nil)
)

// runCluster keeps the node's routes to the groups of other nodes and the
// firewall's rules for them in step with the cluster, until ctx ends. It
// returns nil at once when Options.Endpoints or Options.Nodes is nil (a
// single node's agent). The routes go to the main table of the agent's
// network namespace, tagged with a metric of the node's public subnet
// (routeMetric). Run starts it beside runFirewall.
func (a *Agent) runCluster(ctx context.Context) error {
	if a.opts.Endpoints == nil || a.opts.Nodes == nil {
		return nil
	}
	return a.runClusterWith(ctx, routes.New(routeMetric(a.opts.Network.Subnet())))
}

// routeMetric is the metric of the routes of the node whose public subnet
// is public: Berth servers that share a host (in tests) have distinct
// subnets, and so distinct metrics, and a Table only changes routes of its
// own metric; a restarted agent gets the same one back, and with it its
// routes.
func routeMetric(public netip.Prefix) int {
	h := fnv.New32a()
	h.Write([]byte(public.Masked().String()))
	return 1000 + int(h.Sum32()%(1<<20))
}

// runClusterWith is runCluster with the route table given.
func (a *Agent) runClusterWith(ctx context.Context, table routeTable) error {
	eps := controller.NewInformer(a.opts.Endpoints, controller.InformerOptions{Name: "endpoints", Logger: a.log})
	nodes := controller.NewInformer(a.opts.Nodes, controller.InformerOptions{Name: "nodes", Logger: a.log})
	c := &clusterNet{
		self:   a.opts.NodeName,
		public: a.opts.Network.Subnet(),
		eps:    eps,
		nodes:  nodes,
		routes: table,
		resync: a.opts.Resync,
		log:    a.log,
	}
	if fw, ok := a.opts.Firewall.(clusterFirewall); ok {
		c.fw = fw
	}
	ctrl := controller.New("cluster-network", controller.ReconcileFunc(c.reconcile), controller.Options{Logger: a.log})
	eps.OnChange(func(controller.Change[types.Endpoint]) { ctrl.Enqueue(clusterKey) })
	// A node's conditions change more often than its addresses; only
	// these (and its coming and going) move routes.
	nodes.OnChange(func(ch controller.Change[types.Node]) {
		if ch.Old == nil || ch.New == nil || !slices.Equal(ch.Old.Addresses, ch.New.Addresses) {
			ctrl.Enqueue(clusterKey)
		}
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{}, 2)
	go func() { eps.Run(ctx); done <- struct{}{} }()
	go func() { nodes.Run(ctx); done <- struct{}{} }()
	defer func() { <-done; <-done }()
	// The routes of a restarted agent stay as they were until both lists
	// are in: a pass over half a cluster would delete the others.
	if eps.WaitSynced(ctx) != nil || nodes.WaitSynced(ctx) != nil {
		return nil
	}
	ctrl.Enqueue(clusterKey)
	return ctrl.Run(ctx)
}

// clusterNet is the state of the cluster network controller.
type clusterNet struct {
	self   string
	public netip.Prefix
	eps    *controller.Informer[types.Endpoint]
	nodes  *controller.Informer[types.Node]
	routes routeTable
	fw     clusterFirewall // nil: no firewall
	resync time.Duration
	log    *slog.Logger
}

// reconcile syncs the routes and the other nodes' half of the firewall
// from the informers' caches, and comes back after a resync period to
// repair drift (a route deleted by hand).
func (c *clusterNet) reconcile(ctx context.Context, _ string) (controller.Result, error) {
	eps := values(c.eps.List())
	nodes := map[string]types.Node{}
	for _, it := range c.nodes.List() {
		nodes[it.Value.Name] = it.Value
	}
	rs, skipped := clusterRoutes(c.self, eps, nodes)
	st, bad := clusterFirewallState(c.self, c.public, eps)
	for _, s := range append(skipped, bad...) {
		c.log.Debug("cluster network: endpoint left out", "reason", s)
	}
	var errs []error
	if err := c.routes.Sync(ctx, rs); err != nil {
		errs = append(errs, fmt.Errorf("sync routes to groups on other nodes: %w", err))
	}
	if c.fw != nil {
		if err := c.fw.ApplyCluster(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("firewall rules of groups on other nodes: %w", err))
		}
	}
	return controller.Result{RequeueAfter: c.resync}, errors.Join(errs...)
}

func values[T any](items []controller.Item[T]) []T {
	out := make([]T, len(items))
	for i, it := range items {
		out[i] = it.Value
	}
	return out
}

// clusterRoutes is the node self's route set: for every endpoint of
// another node, its address (/32) via that node's first address. It also
// says, for people, which endpoints it left out and why: their node is
// unknown or has no IPv4 address, their address is bad, or an endpoint
// before them in the list has it (two gateways for one address cannot be;
// the scheduler's claims make it a moment's overlap at most).
func clusterRoutes(self string, eps []types.Endpoint, nodes map[string]types.Node) ([]routes.Route, []string) {
	var out []routes.Route
	var skipped []string
	seen := map[netip.Addr]string{}
	for _, e := range eps {
		if e.Node == self || e.IP == "" {
			continue
		}
		ip, err := netip.ParseAddr(e.IP)
		if err != nil || !ip.Is4() {
			skipped = append(skipped, fmt.Sprintf("%s: address %q is not IPv4", e.Group, e.IP))
			continue
		}
		n, ok := nodes[e.Node]
		if !ok {
			skipped = append(skipped, fmt.Sprintf("%s: node %q is unknown", e.Group, e.Node))
			continue
		}
		via, ok := nextHop(n)
		if !ok {
			skipped = append(skipped, fmt.Sprintf("%s: node %q has no IPv4 address", e.Group, e.Node))
			continue
		}
		if other, dup := seen[ip]; dup {
			skipped = append(skipped, fmt.Sprintf("%s: address %s is %s's", e.Group, ip, other))
			continue
		}
		seen[ip] = e.Group
		out = append(out, routes.Route{Dst: netip.PrefixFrom(ip, 32), Via: via})
	}
	slices.SortFunc(out, func(a, b routes.Route) int { return a.Dst.Addr().Compare(b.Dst.Addr()) })
	return out, skipped
}

// nextHop is where the other nodes send the traffic of n's groups: its
// first address.
func nextHop(n types.Node) (netip.Addr, bool) {
	if len(n.Addresses) == 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(n.Addresses[0])
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// clusterFirewallState is the other nodes' half of the firewall State of
// node self: the groups of every other node, as the firewall sees a
// group of another node (no bridge here), and the prefixes of every
// endpoint, the node's own included: a subnet in use anywhere is managed
// everywhere, so its unknown addresses are closed on every node. It also
// says which endpoints it left out (a bad address or prefix).
func clusterFirewallState(self string, public netip.Prefix, eps []types.Endpoint) (firewall.State, []string) {
	st := firewall.State{Managed: []netip.Prefix{public}}
	var bad []string
	for _, e := range eps {
		prefix := public
		if e.Kind == types.EndpointPrivate {
			p, err := netip.ParsePrefix(e.SubnetPrefix)
			if err != nil || !p.Addr().Is4() {
				bad = append(bad, fmt.Sprintf("%s: subnet %q is not an IPv4 prefix", e.Group, e.SubnetPrefix))
				continue
			}
			prefix = p.Masked()
			if !slices.Contains(st.Managed, prefix) {
				st.Managed = append(st.Managed, prefix)
			}
		}
		if e.Node == self {
			continue
		}
		ip, err := netip.ParseAddr(e.IP)
		if err != nil || !ip.Is4() {
			bad = append(bad, fmt.Sprintf("%s: address %q is not IPv4", e.Group, e.IP))
			continue
		}
		g := firewall.Group{Name: e.Group, UID: e.UID, Subscription: strings.ToLower(e.Subscription), IP: ip, Subnet: prefix, Kind: firewall.KindNone}
		switch e.Kind {
		case types.EndpointPrivate:
			g.Kind, g.VirtualNetwork = firewall.KindPrivate, e.VirtualNetwork
		case types.EndpointPublic:
			g.Kind = firewall.KindPublic
			for _, p := range e.Ports {
				g.Ports = append(g.Ports, firewall.Port{Protocol: strings.ToLower(p.Protocol), Port: uint16(p.Port)})
			}
		}
		st.Groups = append(st.Groups, g)
	}
	return st, bad
}
