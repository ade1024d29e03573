package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/controllers"
	"github.com/berth-dev/berth/internal/log"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// Event names the scheduler records on a group's instance view.
const (
	EventScheduled        = "Scheduled"
	EventFailedScheduling = "FailedScheduling"
)

// retryUnschedulable is how often a group that fits nowhere is tried
// again even without a change of nodes or groups.
const retryUnschedulable = time.Minute

// Options configure a Scheduler.
type Options struct {
	Store     *store.Store
	Informers *controllers.Informers
	// PublicSubnet is where groups outside virtual networks get their
	// address; the gateway (first address) belongs to the nodes' bridges.
	PublicSubnet netip.Prefix
	Policy       Policy
	Workers      int
	Logger       *slog.Logger
	Now          func() time.Time
}

// Scheduler binds each group that waits for a place to a node that has
// room for it, allocating its cluster-wide address on first placement.
type Scheduler struct {
	opts Options
	ctl  *controller.Controller

	mu sync.Mutex
	// usage is what the groups bound to each node request, in integer
	// units so that adding and removing never drifts.
	usage map[string]*units
	// counted is what each group contributes to usage, and at which
	// revision; a binding made here counts before the informer shows it
	// (the cache lags the store), and older events of that group are then
	// ignored.
	counted map[string]contribution
	// assumedIPs are addresses claimed by bindings the claims informer
	// does not show yet; cursors where the next search of a network starts.
	assumedIPs map[string]string // network/ip -> group key
	cursors    map[string]netip.Addr
}

type units struct {
	milliCPU, mib int64
	gpus          map[string]int32
	groups        int
}

type contribution struct {
	node     string
	milliCPU int64
	mib      int64
	gpu      types.GPUResource
	// rev is the group revision the contribution is known at.
	rev int64
}

// New returns a scheduler; Run starts it.
func New(opts Options) *Scheduler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Policy == "" {
		opts.Policy = Spread
	}
	s := &Scheduler{opts: opts, usage: map[string]*units{}, counted: map[string]contribution{},
		assumedIPs: map[string]string{}, cursors: map[string]netip.Addr{}}
	s.ctl = controller.New("scheduler", s, controller.Options{Workers: opts.Workers, Logger: opts.Logger})
	in := opts.Informers
	in.Groups.OnChange(s.groupChanged)
	in.Nodes.OnChange(func(controller.Change[types.Node]) { s.enqueuePending() })
	in.IPClaims.OnChange(func(c controller.Change[types.IPClaim]) {
		if c.New != nil {
			s.mu.Lock()
			delete(s.assumedIPs, c.Key)
			s.mu.Unlock()
		}
	})
	return s
}

// Run schedules until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := s.opts.Informers.WaitSynced(ctx); err != nil {
		return nil
	}
	s.enqueuePending()
	return s.ctl.Run(ctx)
}

// waiting reports whether g waits for a node.
func waiting(g *types.ContainerGroup) bool {
	return g.NodeName == "" && !g.Deleting && !g.Stopped
}

// groupChanged keeps usage current and queues groups that wait; a group
// that freed room lets every waiting group try again.
func (s *Scheduler) groupChanged(c controller.Change[types.ContainerGroup]) {
	freed := false
	s.mu.Lock()
	old, had := s.counted[c.Key]
	if had && c.Revision < old.rev {
		s.mu.Unlock()
		return // older than a binding made here
	}
	if had {
		s.remove(old)
		delete(s.counted, c.Key)
	}
	if c.New != nil && c.New.NodeName != "" && !c.New.Stopped {
		con := contributionOf(c.New, c.Revision)
		s.add(con)
		s.counted[c.Key] = con
		freed = had && (con.node != old.node || con.milliCPU < old.milliCPU || con.mib < old.mib)
	} else {
		freed = had
	}
	s.mu.Unlock()
	if c.New != nil && waiting(c.New) {
		s.ctl.Enqueue(c.Key)
	}
	if freed {
		s.enqueuePending()
	}
}

// enqueuePending queues every group that waits for a node.
func (s *Scheduler) enqueuePending() {
	for _, it := range s.opts.Informers.Groups.List() {
		if waiting(&it.Value) {
			s.ctl.Enqueue(it.Key)
		}
	}
}

func contributionOf(g *types.ContainerGroup, rev int64) contribution {
	req := g.Spec.Requests()
	return contribution{node: g.NodeName, milliCPU: int64(math.Round(req.CPU * 1000)), mib: int64(math.Round(req.MemoryGB * 1024)), gpu: req.GPU, rev: rev}
}

func (s *Scheduler) add(c contribution) {
	u := s.usage[c.node]
	if u == nil {
		u = &units{gpus: map[string]int32{}}
		s.usage[c.node] = u
	}
	u.milliCPU += c.milliCPU
	u.mib += c.mib
	u.groups++
	if c.gpu.Count > 0 {
		u.gpus[c.gpu.SKU] += c.gpu.Count
	}
}

func (s *Scheduler) remove(c contribution) {
	u := s.usage[c.node]
	if u == nil {
		return
	}
	u.milliCPU -= c.milliCPU
	u.mib -= c.mib
	u.groups--
	if c.gpu.Count > 0 {
		u.gpus[c.gpu.SKU] -= c.gpu.Count
	}
	if u.groups <= 0 {
		delete(s.usage, c.node)
	}
}

// nodeInfosLocked is every node with what its groups request.
func (s *Scheduler) nodeInfosLocked() []NodeInfo {
	nodes := s.opts.Informers.Nodes.List()
	out := make([]NodeInfo, 0, len(nodes))
	for _, it := range nodes {
		ni := NodeInfo{Node: it.Value}
		if u := s.usage[it.Value.Name]; u != nil {
			ni.Used = types.ResourceList{CPU: float64(u.milliCPU) / 1000, MemoryGB: float64(u.mib) / 1024}
			ni.UsedGPUs = u.gpus
			ni.Groups = u.groups
		}
		out = append(out, ni)
	}
	return out
}

// Reconcile places one waiting group.
func (s *Scheduler) Reconcile(ctx context.Context, key string) (controller.Result, error) {
	it, ok := s.opts.Informers.Groups.GetItem(key)
	if !ok || !waiting(&it.Value) {
		return controller.Result{}, nil
	}
	g := it.Value
	b, reason, err := s.decide(&g, it.Revision)
	if err != nil {
		return controller.Result{}, err
	}
	if reason != "" {
		return controller.Result{RequeueAfter: retryUnschedulable}, s.reportUnschedulable(ctx, &g, it.Revision, reason)
	}
	if b == nil {
		return controller.Result{}, nil
	}
	return controller.Result{}, s.bind(ctx, &g, it.Revision, b)
}

// binding is a placement decided and assumed, not yet written.
type binding struct {
	node     string
	claimKey string // the new address's claim; "" when the group had one
	con      contribution
}

// decide places g and assumes the placement (its requests count on the
// node, its new address is taken) before anything is written, all under
// one lock: two workers placing at once never both take the last room of
// a node. It returns nil and no reason when g was bound here already and
// the cache has not caught up.
func (s *Scheduler) decide(g *types.ContainerGroup, rev int64) (*binding, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := g.Key()
	if c, ok := s.counted[key]; ok && c.rev > rev {
		return nil, "", nil
	}
	node, err := Place(g, s.nodeInfosLocked(), s.opts.Policy)
	var u *Unschedulable
	if errors.As(err, &u) {
		return nil, u.Error(), nil
	}
	if err != nil {
		return nil, "", err
	}
	b := &binding{node: node}
	if g.IP == "" {
		network := types.IPNetwork(g)
		ip, err := s.allocateLocked(g, network)
		if err != nil {
			return nil, err.Error() + ".", nil
		}
		g.IP = ip.String()
		b.claimKey = types.IPClaimKey(network, g.IP)
		s.assumedIPs[b.claimKey] = key
	}
	g.NodeName = node
	// Events of the group up to rev are older than this binding.
	b.con = contributionOf(g, rev+1)
	if old, ok := s.counted[key]; ok {
		s.remove(old)
	}
	s.add(b.con)
	s.counted[key] = b.con
	return b, "", nil
}

// forget undoes the assumptions of a binding that was not written.
func (s *Scheduler) forget(key string, b *binding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.claimKey != "" {
		delete(s.assumedIPs, b.claimKey)
	}
	if c, ok := s.counted[key]; ok && c == b.con {
		s.remove(c)
		delete(s.counted, key)
	}
}

// bind writes the group's node (and new address), the claim on the
// address and a Scheduled event in one transaction at the revision the
// placement was computed from: a group changed meanwhile is placed again.
func (s *Scheduler) bind(ctx context.Context, g *types.ContainerGroup, rev int64, b *binding) error {
	key := g.Key()
	var ops []store.Op
	if b.claimKey != "" {
		ops = append(ops, store.OpCreate(types.PrefixIPClaims+b.claimKey, types.IPClaim{IP: g.IP, GroupKey: key, GroupUID: g.UID}))
	}
	st, err := s.status(ctx, g)
	if err != nil {
		s.forget(key, b)
		return err
	}
	st.Events = types.AddEvent(st.Events, s.opts.Now().UTC(), EventScheduled, fmt.Sprintf("Successfully assigned container group '%s' to node %s.", g.Name, b.node), "Normal")
	ops = append(ops, store.OpUpdate(types.PrefixGroups+key, *g, rev), store.OpPut(types.PrefixGroupStatus+key, st))
	newRev, err := s.opts.Store.Commit(ctx, ops...)
	if err != nil {
		s.forget(key, b)
		return fmt.Errorf("bind %s to %s: %w", key, b.node, err)
	}
	s.mu.Lock()
	if c, ok := s.counted[key]; ok && c == b.con {
		c.rev = newRev
		s.counted[key] = c
	}
	s.mu.Unlock()
	log.G(ctx).Info("group scheduled", "group", key, "node", b.node, "ip", g.IP)
	return nil
}

// status is the group's stored status to add an event to: the one of
// this incarnation, or a new one. It is read from the store, not a cache:
// the node controller may just have written it when it unbound the group.
func (s *Scheduler) status(ctx context.Context, g *types.ContainerGroup) (types.GroupStatus, error) {
	var st types.GroupStatus
	_, err := s.opts.Store.Get(ctx, types.PrefixGroupStatus+g.Key(), &st)
	if errdefs.IsNotFound(err) || (err == nil && st.UID != g.UID) {
		return types.GroupStatus{UID: g.UID, ProvisioningState: types.ProvisioningPending, State: types.GroupPending}, nil
	}
	if err != nil {
		return types.GroupStatus{}, err
	}
	st.NodeName = ""
	return st, nil
}

// reportUnschedulable records why the group fits nowhere, once per
// distinct reason (a retry with the same answer writes nothing).
func (s *Scheduler) reportUnschedulable(ctx context.Context, g *types.ContainerGroup, rev int64, reason string) error {
	st, err := s.status(ctx, g)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("The container group '%s' cannot be placed: %s It stays pending until there is room.", g.Name, reason)
	if n := len(st.Events); n > 0 && st.Events[n-1].Name == EventFailedScheduling && st.Events[n-1].Message == msg {
		return nil
	}
	st.State = types.GroupPending
	st.Events = types.AddEvent(st.Events, s.opts.Now().UTC(), EventFailedScheduling, msg, "Warning")
	log.G(ctx).Info("group cannot be placed", "group", g.Key(), "reason", reason)
	_, err = s.opts.Store.Commit(ctx, store.OpCheck(types.PrefixGroups+g.Key(), rev), store.OpPut(types.PrefixGroupStatus+g.Key(), st))
	if errors.Is(err, errdefs.ErrConflict) {
		return nil // the group changed: its change queues it again
	}
	return err
}

// allocateLocked picks a free address of the group's network.
func (s *Scheduler) allocateLocked(g *types.ContainerGroup, network string) (netip.Addr, error) {
	prefix := s.opts.PublicSubnet
	if sn := g.Spec.Subnet; sn != nil {
		p, err := netip.ParsePrefix(sn.AddressPrefix)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("subnet %s of the group: %w", sn.AddressPrefix, err)
		}
		prefix = p
	}
	if !prefix.IsValid() {
		return netip.Addr{}, errors.New("no public subnet is configured")
	}
	claims := s.opts.Informers.IPClaims
	ip, ok := nextFree(prefix, s.cursors[network], func(a netip.Addr) bool {
		k := types.IPClaimKey(network, a.String())
		if _, ok := s.assumedIPs[k]; ok {
			return true
		}
		_, ok := claims.Get(k)
		return ok
	})
	if !ok {
		return netip.Addr{}, fmt.Errorf("no free address is left in %s", prefix)
	}
	s.cursors[network] = ip
	return ip, nil
}
