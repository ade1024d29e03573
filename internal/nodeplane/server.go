// Package nodeplane is the node protocol of the control plane: what an
// agent asks of it (register, renew its lease, the groups bound to it,
// every group's endpoint, the nodes) and what it reports (a group's
// status, a deleted group torn down).
//
// Server implements it over the store; the API serves it to remote agents
// with mutual TLS (internal/apiserver, nodes.go), and Remote is an agent's
// client of that API. Local is the in-process agent's view through Server.
// Local and Remote pass one conformance test.
package nodeplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/controllers"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// Lease defaults: renewed every 3 s, lapsed after 10 s without renewal.
const (
	DefaultLeaseTTL   = 10 * time.Second
	DefaultLeaseRenew = 3 * time.Second
)

// ServerOptions configure a Server.
type ServerOptions struct {
	Store *store.Store
	// Informers serve the groups, endpoints and nodes from the server's
	// caches; without them each source has a watch of its own on the store.
	Informers *controllers.Informers
	// PublicSubnet is the subnet of public groups' addresses.
	PublicSubnet string
	// LeaseTTL and LeaseRenew: defaults DefaultLeaseTTL, DefaultLeaseRenew.
	LeaseTTL, LeaseRenew time.Duration
	Now                  func() time.Time
}

// Server is the control plane's side of the node protocol.
type Server struct {
	opts     ServerOptions
	groups   store.Typed[types.ContainerGroup]
	statuses store.Typed[types.GroupStatus]
	nodes    store.Typed[types.Node]
	leases   store.Typed[types.Lease]
}

// NewServer returns the node protocol over opts.Store.
func NewServer(opts ServerOptions) *Server {
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.LeaseRenew <= 0 {
		opts.LeaseRenew = DefaultLeaseRenew
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	st := opts.Store
	return &Server{
		opts:     opts,
		groups:   store.NewTyped[types.ContainerGroup](st, types.PrefixGroups),
		statuses: store.NewTyped[types.GroupStatus](st, types.PrefixGroupStatus),
		nodes:    store.NewTyped[types.Node](st, types.PrefixNodes),
		leases:   store.NewTyped[types.Lease](st, types.PrefixLeases),
	}
}

// Info is what every agent learns when it registers.
func (s *Server) Info() types.ClusterInfo {
	return types.ClusterInfo{
		PublicSubnet:      s.opts.PublicSubnet,
		LeaseTTLSeconds:   int(s.opts.LeaseTTL / time.Second),
		LeaseRenewSeconds: max(1, int(s.opts.LeaseRenew/time.Second)),
	}
}

// Register records what the agent says of its node: capacity, addresses,
// zone, labels, version, isolation. What operators and controllers set
// (cordon, drain, conditions) is kept. It renews the node's lease.
func (s *Server) Register(ctx context.Context, n types.Node) (types.ClusterInfo, error) {
	if err := validNodeName(n.Name); err != nil {
		return types.ClusterInfo{}, err
	}
	for {
		cur, rev, err := s.nodes.Get(ctx, n.Name)
		switch {
		case errdefs.IsNotFound(err):
			n.Unschedulable, n.Draining, n.Conditions = false, false, nil
			n.CreatedAt = s.opts.Now().UTC()
			_, err = s.nodes.Create(ctx, n.Name, n)
		case err != nil:
			return types.ClusterInfo{}, err
		default:
			n.Unschedulable, n.Draining, n.Conditions, n.CreatedAt = cur.Unschedulable, cur.Draining, cur.Conditions, cur.CreatedAt
			_, err = s.nodes.Update(ctx, n.Name, n, rev)
		}
		if errdefs.IsAlreadyExists(err) || errdefs.IsConflict(err) {
			continue
		}
		if err != nil {
			return types.ClusterInfo{}, err
		}
		return s.Info(), s.RenewLease(ctx, n.Name)
	}
}

// RenewLease stamps the node's lease with the server's clock.
func (s *Server) RenewLease(ctx context.Context, node string) error {
	if err := validNodeName(node); err != nil {
		return err
	}
	_, err := s.leases.Put(ctx, node, types.Lease{Node: node, RenewedAt: s.opts.Now().UTC(), TTLSeconds: int(s.opts.LeaseTTL / time.Second)})
	return err
}

// ErrNotBound is the class of a report about a group that is no longer
// bound to the reporting node (moved, deleted, re-created): the agent
// drops it and stops what it runs of it.
var ErrNotBound = errdefs.ErrFailedPrecondition

// ReportStatus stores a group's status as node observed it, only while
// the group is still this incarnation bound to node: the status write is
// fenced on the group's revision, so a node that lost the group (it was
// moved while the node was cut off) can never overwrite the status of
// the node that runs it now.
func (s *Server) ReportStatus(ctx context.Context, node, key string, st *types.GroupStatus) error {
	st.NodeName = node
	st.TornDown = false
	return s.fenced(ctx, node, key, st.UID, *st)
}

// ReportTornDown records that nothing of a deleted group is left on
// node; the lifecycle controller then removes the group. A group that is
// gone or no longer bound to node needs no report.
func (s *Server) ReportTornDown(ctx context.Context, node, key, uid string) error {
	err := s.fenced(ctx, node, key, uid, types.GroupStatus{UID: uid, NodeName: node, TornDown: true})
	if errors.Is(err, ErrNotBound) {
		return nil
	}
	return err
}

func (s *Server) fenced(ctx context.Context, node, key, uid string, st types.GroupStatus) error {
	for attempt := 0; ; attempt++ {
		g, rev, err := s.groups.Get(ctx, key)
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("group %s is gone: %w", key, ErrNotBound)
		}
		if err != nil {
			return err
		}
		if g.UID != uid || g.NodeName != node {
			return fmt.Errorf("group %s (uid %s) is not bound to node %s: %w", key, uid, node, ErrNotBound)
		}
		_, err = s.opts.Store.Commit(ctx, store.OpCheck(types.PrefixGroups+key, rev), store.OpPut(types.PrefixGroupStatus+key, st))
		if errdefs.IsConflict(err) && attempt < 5 {
			continue // the group changed (a tag, an update): check again
		}
		return err
	}
}

// LastStatus returns the status of a group bound to node, nil when it
// has none: an agent seeds its in-memory status with it once, when it
// first sees the group (after its own restart, or when the group moved
// to it). A node reads only its own groups' statuses: ErrNotBound for
// any other.
func (s *Server) LastStatus(ctx context.Context, node, key string) (*types.GroupStatus, error) {
	if err := s.boundTo(ctx, node, key); err != nil {
		return nil, err
	}
	st, _, err := s.statuses.Get(ctx, key)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// boundTo checks that the group at key is bound to node, in the cache the
// node's watch of its groups is served from when there is one: what the
// node has seen bound, the cache has too.
func (s *Server) boundTo(ctx context.Context, node, key string) error {
	var g types.ContainerGroup
	found := false
	if in := s.opts.Informers; in != nil {
		g, found = in.Groups.Get(key)
	}
	if !found {
		var err error
		g, _, err = s.groups.Get(ctx, key)
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("group %s is gone: %w", key, ErrNotBound)
		}
		if err != nil {
			return err
		}
	}
	if g.NodeName != node {
		return fmt.Errorf("group %s is not bound to node %s: %w", key, node, ErrNotBound)
	}
	return nil
}

// Assigned is the source of the groups bound to node.
func (s *Server) Assigned(node string) controller.Source[types.ContainerGroup] {
	keep := func(g *types.ContainerGroup) bool { return g.NodeName == node }
	if in := s.opts.Informers; in != nil {
		return in.Groups.Source(keep)
	}
	return controller.Filter(controller.StoreSource(s.groups), keep)
}

// Endpoints is the source of every group's endpoint, keyed by group key.
func (s *Server) Endpoints() controller.Source[types.Endpoint] {
	var src controller.Source[types.ContainerGroup]
	if in := s.opts.Informers; in != nil {
		src = in.Groups.Source(nil)
	} else {
		src = controller.StoreSource(s.groups)
	}
	return controller.Map(src, func(_ string, g *types.ContainerGroup) (types.Endpoint, bool) { return types.EndpointOf(g) })
}

// Nodes is the source of every node.
func (s *Server) Nodes() controller.Source[types.Node] {
	if in := s.opts.Informers; in != nil {
		return in.Nodes.Source(nil)
	}
	return controller.StoreSource(s.nodes)
}

// validNodeName keeps node names usable as store keys, certificate names
// and file names.
func validNodeName(name string) error {
	if len(name) == 0 || len(name) > 63 {
		return fmt.Errorf("node name %q: want 1 to 63 characters: %w", name, errdefs.ErrInvalidArgument)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (r == '-' || r == '.') && i > 0 && i < len(name)-1
		if !ok {
			return fmt.Errorf("node name %q: want lower-case letters, digits, '-' and '.', starting and ending with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// ValidNodeName reports whether name may name a node.
func ValidNodeName(name string) error { return validNodeName(name) }

// Local is one node's view of the control plane through a Server: the
// ControlPlane of the in-process agent.
type Local struct {
	s    *Server
	node string
}

// Local returns node's view.
func (s *Server) Local(node string) *Local { return &Local{s: s, node: node} }

func (l *Local) Register(ctx context.Context, n types.Node) (types.ClusterInfo, error) {
	n.Name = l.node
	return l.s.Register(ctx, n)
}
func (l *Local) RenewLease(ctx context.Context) error { return l.s.RenewLease(ctx, l.node) }
func (l *Local) Assigned() controller.Source[types.ContainerGroup] {
	return l.s.Assigned(l.node)
}
func (l *Local) Endpoints() controller.Source[types.Endpoint] { return l.s.Endpoints() }
func (l *Local) Nodes() controller.Source[types.Node]         { return l.s.Nodes() }
func (l *Local) LastStatus(ctx context.Context, key string) (*types.GroupStatus, error) {
	return l.s.LastStatus(ctx, l.node, key)
}
func (l *Local) ReportStatus(ctx context.Context, key string, st *types.GroupStatus) error {
	return l.s.ReportStatus(ctx, l.node, key, st)
}
func (l *Local) ReportTornDown(ctx context.Context, key, uid string) error {
	return l.s.ReportTornDown(ctx, l.node, key, uid)
}
