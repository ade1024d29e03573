package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

// Plane is an in-memory control plane as one node sees it, with the
// semantics of nodeplane.Local that the agent relies on:
//   - the groups of the cluster, by key, each changed at a revision; the
//     node watches those bound to it (Assigned), and a group moved to
//     another node or deleted is a delete event for it;
//   - a bounded event log: a watch from a revision the log no longer
//     reaches gets controller.EventReset, as a compacted store answers;
//   - fenced reports: a status of a group that is not this incarnation
//     bound to the node fails with errdefs.ErrFailedPrecondition and is
//     not stored;
//   - ReportTornDown of the bound incarnation of a deleting group removes
//     it, as the lifecycle controller does once the node reports.
//
// Values are read and written as copies, through JSON as the store does.
// It is safe for concurrent use.
type Plane struct {
	node string

	mu       sync.Mutex
	rev      int64
	groups   map[string]storedGroup
	statuses map[string][]byte
	// log holds the changes the node sees after logFrom, oldest first.
	log     []logEntry
	logFrom int64
	history int
	notify  chan struct{} // closed and replaced on every logged change

	info          types.ClusterInfo
	registered    []types.Node
	registerErr   error
	renewals      int
	listErr       error
	lists         int
	reportErr     error
	reportCalls   int
	reportWrites  int
	tornDownErr   error
	tornDownCalls int
	tornDown      []TornDown
}

type storedGroup struct {
	data []byte
	rev  int64
}

// logEntry is one change as the node sees it: a put of a group bound to
// it (data) or a delete (data nil).
type logEntry struct {
	key  string
	data []byte
	rev  int64
}

// TornDown is one ReportTornDown that finished a delete.
type TornDown struct {
	Key, UID string
}

// DefaultHistory is how many changes a Plane's event log keeps.
const DefaultHistory = 64

// NewPlane returns the control plane of node, without groups. Its
// ClusterInfo asks for a lease renewal every second.
func NewPlane(node string) *Plane {
	return &Plane{
		node:     node,
		groups:   map[string]storedGroup{},
		statuses: map[string][]byte{},
		history:  DefaultHistory,
		notify:   make(chan struct{}),
		info:     types.ClusterInfo{PublicSubnet: PublicSubnet.String(), LeaseTTLSeconds: 3, LeaseRenewSeconds: 1},
	}
}

// Node is the name of the node whose view the plane is.
func (p *Plane) Node() string { return p.node }

// Put stores g bound to the plane's node (creates or replaces it) and
// returns its revision.
func (p *Plane) Put(g types.ContainerGroup) int64 {
	g.NodeName = p.node
	return p.store(g)
}

// PutOn stores g bound to node, the plane's or another one, and returns
// its revision.
func (p *Plane) PutOn(node string, g types.ContainerGroup) int64 {
	g.NodeName = node
	return p.store(g)
}

// Move binds the group at key to node, as the scheduler does when it
// moves a group off a node that lost its lease.
func (p *Plane) Move(key, node string) error {
	g := p.Group(key)
	if g == nil {
		return fmt.Errorf("group %s: %w", key, errdefs.ErrNotFound)
	}
	p.PutOn(node, *g)
	return nil
}

// MarkDeleting sets Deleting on the group at key, as an accepted delete
// does.
func (p *Plane) MarkDeleting(key string) error {
	g := p.Group(key)
	if g == nil {
		return fmt.Errorf("group %s: %w", key, errdefs.ErrNotFound)
	}
	g.Deleting = true
	p.store(*g)
	return nil
}

// Delete removes the group at key and its status, as if its delete had
// been finalised elsewhere.
func (p *Plane) Delete(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deleteLocked(key)
}

func (p *Plane) store(g types.ContainerGroup) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := g.Key()
	old, had := p.groups[key]
	p.rev++
	data := encode(g)
	p.groups[key] = storedGroup{data: data, rev: p.rev}
	switch {
	case g.NodeName == p.node:
		p.logLocked(logEntry{key: key, data: data, rev: p.rev})
	case had && p.boundLocked(old.data):
		p.logLocked(logEntry{key: key, rev: p.rev})
	}
	return p.rev
}

func (p *Plane) deleteLocked(key string) {
	old, had := p.groups[key]
	if !had {
		return
	}
	p.rev++
	delete(p.groups, key)
	delete(p.statuses, key)
	if p.boundLocked(old.data) {
		p.logLocked(logEntry{key: key, rev: p.rev})
	}
}

func (p *Plane) boundLocked(data []byte) bool {
	return decode[types.ContainerGroup](data).NodeName == p.node
}

// logLocked appends e to the event log, dropping the oldest entry when
// full, and wakes the watchers.
func (p *Plane) logLocked(e logEntry) {
	if len(p.log) >= p.history {
		p.logFrom = p.log[0].rev
		p.log = p.log[1:]
	}
	p.log = append(p.log, e)
	close(p.notify)
	p.notify = make(chan struct{})
}

// Compact drops the event log, as a store compaction does: a watch from
// any revision before now gets EventReset.
func (p *Plane) Compact() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log, p.logFrom = nil, p.rev
	close(p.notify) // watchers behind the log must learn it now
	p.notify = make(chan struct{})
}

// Group returns the group at key, whichever node it is bound to; nil
// when there is none.
func (p *Plane) Group(key string) *types.ContainerGroup {
	p.mu.Lock()
	defer p.mu.Unlock()
	sg, ok := p.groups[key]
	if !ok {
		return nil
	}
	return decode[types.ContainerGroup](sg.data)
}

// SetStatus stores st as the status of key, as a node's earlier report.
func (p *Plane) SetStatus(key string, st types.GroupStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.statuses[key] = encode(st)
}

// Status returns the stored status of key, nil when there is none.
func (p *Plane) Status(key string) *types.GroupStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return decodeOrNil[types.GroupStatus](p.statuses[key])
}

// SetClusterInfo sets what Register answers.
func (p *Plane) SetClusterInfo(info types.ClusterInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.info = info
}

// FailRegister makes Register fail with err; nil lets it succeed again.
func (p *Plane) FailRegister(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.registerErr = err
}

// FailList makes Assigned().List fail with err, as an unreachable control
// plane does; nil lets it succeed again.
func (p *Plane) FailList(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listErr = err
}

// FailReportStatus makes ReportStatus fail with err (nothing is stored);
// nil lets it succeed again.
func (p *Plane) FailReportStatus(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reportErr = err
}

// FailReportTornDown makes ReportTornDown fail with err; nil lets it
// succeed again.
func (p *Plane) FailReportTornDown(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tornDownErr = err
}

// Registered returns the nodes Register recorded, in order.
func (p *Plane) Registered() []types.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]types.Node, len(p.registered))
	for i, n := range p.registered {
		out[i] = *decode[types.Node](encode(n))
	}
	return out
}

// Renewals counts the RenewLease calls (a registration is not one).
func (p *Plane) Renewals() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.renewals
}

// Lists counts the Assigned().List calls, failed ones included.
func (p *Plane) Lists() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lists
}

// ReportCalls counts the ReportStatus calls, failed and refused ones
// included.
func (p *Plane) ReportCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reportCalls
}

// StatusWrites counts the ReportStatus calls that stored a status.
func (p *Plane) StatusWrites() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reportWrites
}

// TornDownCalls counts the ReportTornDown calls, failed ones and ones
// about groups not bound here included.
func (p *Plane) TornDownCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tornDownCalls
}

// TornDown returns the ReportTornDown calls that finished a delete, in
// order.
func (p *Plane) TornDown() []TornDown {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.tornDown)
}

// Register records n and answers the ClusterInfo. Like nodeplane.Local
// it names the node itself: n.Name is the plane's node.
func (p *Plane) Register(_ context.Context, n types.Node) (types.ClusterInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.registerErr != nil {
		return types.ClusterInfo{}, p.registerErr
	}
	n.Name = p.node
	p.registered = append(p.registered, *decode[types.Node](encode(n)))
	return p.info, nil
}

// RenewLease counts a renewal.
func (p *Plane) RenewLease(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.renewals++
	return nil
}

// Assigned is the source of the groups bound to the plane's node.
func (p *Plane) Assigned() controller.Source[types.ContainerGroup] { return assigned{p} }

type assigned struct{ p *Plane }

// List returns the groups bound to the node, in key order, each with the
// revision it was last changed at, and the plane's revision.
func (s assigned) List(context.Context) ([]controller.Item[types.ContainerGroup], int64, error) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lists++
	if p.listErr != nil {
		return nil, 0, p.listErr
	}
	var out []controller.Item[types.ContainerGroup]
	for _, k := range slices.Sorted(maps.Keys(p.groups)) {
		sg := p.groups[k]
		g := decode[types.ContainerGroup](sg.data)
		if g.NodeName == p.node {
			out = append(out, controller.Item[types.ContainerGroup]{Key: k, Value: *g, Revision: sg.rev})
		}
	}
	return out, p.rev, nil
}

// Watch streams the node's changes after afterRev, in order; EventReset
// (then the channel closes) when the log no longer reaches afterRev.
func (s assigned) Watch(ctx context.Context, afterRev int64) <-chan controller.Event[types.ContainerGroup] {
	ch := make(chan controller.Event[types.ContainerGroup])
	go s.p.serve(ctx, afterRev, ch)
	return ch
}

func (p *Plane) serve(ctx context.Context, after int64, ch chan<- controller.Event[types.ContainerGroup]) {
	defer close(ch)
	send := func(ev controller.Event[types.ContainerGroup]) bool {
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		p.mu.Lock()
		if after < p.logFrom {
			rev := p.rev
			p.mu.Unlock()
			send(controller.Event[types.ContainerGroup]{Type: controller.EventReset, Revision: rev})
			return
		}
		var pending []logEntry
		for _, e := range p.log {
			if e.rev > after {
				pending = append(pending, e)
			}
		}
		wait := p.notify
		p.mu.Unlock()
		for _, e := range pending {
			ev := controller.Event[types.ContainerGroup]{Type: controller.EventDelete, Key: e.key, Revision: e.rev}
			if e.data != nil {
				ev.Type, ev.Value = controller.EventPut, *decode[types.ContainerGroup](e.data)
			}
			if !send(ev) {
				return
			}
			after = e.rev
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return
		}
	}
}

// LastStatus returns the stored status of key, nil when there is none.
func (p *Plane) LastStatus(_ context.Context, key string) (*types.GroupStatus, error) {
	return p.Status(key), nil
}

// ReportStatus stores st as the node's report, fenced: only while the
// group at key is the incarnation st.UID bound to the node.
func (p *Plane) ReportStatus(_ context.Context, key string, st *types.GroupStatus) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reportCalls++
	if p.reportErr != nil {
		return p.reportErr
	}
	if err := p.fencedLocked(key, st.UID); err != nil {
		return err
	}
	stored := *decode[types.GroupStatus](encode(*st))
	stored.NodeName, stored.TornDown = p.node, false
	p.statuses[key] = encode(stored)
	p.reportWrites++
	return nil
}

// ReportTornDown records that nothing of incarnation uid of the group at
// key is left on the node. For the bound incarnation of a deleting group
// it finishes the delete; a report about a group that is gone or not
// bound here is a no-op, as nodeplane answers it.
func (p *Plane) ReportTornDown(_ context.Context, key, uid string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tornDownCalls++
	if p.tornDownErr != nil {
		return p.tornDownErr
	}
	if p.fencedLocked(key, uid) != nil {
		return nil
	}
	p.tornDown = append(p.tornDown, TornDown{Key: key, UID: uid})
	if decode[types.ContainerGroup](p.groups[key].data).Deleting {
		p.deleteLocked(key)
	} else {
		p.statuses[key] = encode(types.GroupStatus{UID: uid, NodeName: p.node, TornDown: true})
	}
	return nil
}

// fencedLocked fails with errdefs.ErrFailedPrecondition unless the group
// at key is incarnation uid bound to the node.
func (p *Plane) fencedLocked(key, uid string) error {
	sg, ok := p.groups[key]
	if !ok {
		return fmt.Errorf("group %s is gone: %w", key, errdefs.ErrFailedPrecondition)
	}
	if g := decode[types.ContainerGroup](sg.data); g.UID != uid || g.NodeName != p.node {
		return fmt.Errorf("group %s (uid %s) is not bound to node %s: %w", key, uid, p.node, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only types the store holds come here
	}
	return b
}

// decode returns the value in b.
func decode[T any](b []byte) *T {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		panic(err)
	}
	return v
}

// decodeOrNil returns the value in b, nil for none.
func decodeOrNil[T any](b []byte) *T {
	if b == nil {
		return nil
	}
	return decode[T](b)
}
