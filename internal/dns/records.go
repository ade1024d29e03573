package dns

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

// Table is the zone's A records. Each change replaces it whole, so a
// lookup never waits for the sync.
type Table struct {
	v atomic.Pointer[tableData]
}

var _ Records = (*Table)(nil)

type tableData struct {
	addrs map[string]netip.Addr
	// names are the names that exist: the records and every name between
	// a record and the zone (empty non-terminals, which answer no data
	// rather than NXDOMAIN).
	names map[string]bool
}

// Set replaces the records: FQDN (any case, trailing dot optional) to
// address. Names between a record and zone exist without an address.
func (t *Table) Set(zone string, records map[string]netip.Addr) {
	zone = mdns.CanonicalName(zone)
	d := &tableData{addrs: map[string]netip.Addr{}, names: map[string]bool{}}
	for name, addr := range records {
		name = mdns.CanonicalName(name)
		d.addrs[name] = addr
		for n := name; n != zone && mdns.IsSubDomain(zone, n); {
			d.names[n] = true
			i, end := mdns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[i:]
		}
	}
	t.v.Store(d)
}

// Lookup implements Records.
func (t *Table) Lookup(name string) (netip.Addr, bool) {
	d := t.v.Load()
	if d == nil {
		return netip.Addr{}, false
	}
	return d.addrs[name], d.names[name]
}

// Len is the number of records.
func (t *Table) Len() int {
	if d := t.v.Load(); d != nil {
		return len(d.addrs)
	}
	return 0
}

// RecordSync keeps a Table current from the groups and their statuses as
// the server's informers see them: running groups with an FQDN and an
// IP. One reconcile rebuilds every record, and the changes that come
// while it runs are merged into the next one by the controller's queue.
type RecordSync struct {
	groups   *controller.Informer[types.ContainerGroup]
	statuses *controller.Informer[types.GroupStatus]
	zone     string
	table    *Table
	ctl      *controller.Controller
}

// recordsKey is the controller's only key: the whole table.
const recordsKey = "records"

// NewRecordSync returns the controller that fills t; Run starts it. The
// informers are run by their owner.
func NewRecordSync(groups *controller.Informer[types.ContainerGroup], statuses *controller.Informer[types.GroupStatus], zone string, t *Table, log *slog.Logger) *RecordSync {
	r := &RecordSync{groups: groups, statuses: statuses, zone: zone, table: t}
	r.ctl = controller.New("dns", r, controller.Options{Workers: 1, Logger: log})
	groups.OnChange(func(controller.Change[types.ContainerGroup]) { r.ctl.Enqueue(recordsKey) })
	statuses.OnChange(func(controller.Change[types.GroupStatus]) { r.ctl.Enqueue(recordsKey) })
	return r
}

// Run keeps the table current until ctx ends.
func (r *RecordSync) Run(ctx context.Context) error {
	if err := r.groups.WaitSynced(ctx); err != nil {
		return nil
	}
	if err := r.statuses.WaitSynced(ctx); err != nil {
		return nil
	}
	r.ctl.Enqueue(recordsKey)
	return r.ctl.Run(ctx)
}

// Reconcile rebuilds the table from the informers' caches.
func (r *RecordSync) Reconcile(context.Context, string) (controller.Result, error) {
	v := view{groups: map[string]groupName{}, ips: map[string]statusIP{}}
	for _, it := range r.groups.List() {
		v.putGroup(it.Key, &it.Value)
	}
	for _, it := range r.statuses.List() {
		v.putStatus(it.Key, &it.Value)
	}
	r.table.Set(r.zone, v.records())
	return controller.Result{}, nil
}

// view is what the records are made of, by group key.
type view struct {
	groups map[string]groupName
	ips    map[string]statusIP
}

type groupName struct {
	uid, fqdn string
	active    bool
}

type statusIP struct {
	uid string
	ip  netip.Addr
}

func (v *view) putGroup(key string, g *types.ContainerGroup) {
	n := groupName{uid: g.UID, active: !g.Deleting && !g.Stopped}
	if g.Spec.IPAddress != nil {
		n.fqdn = g.Spec.IPAddress.FQDN
	}
	if n.fqdn == "" {
		delete(v.groups, key)
		return
	}
	v.groups[key] = n
}

func (v *view) putStatus(key string, st *types.GroupStatus) {
	ip, err := netip.ParseAddr(st.IP)
	if err != nil {
		delete(v.ips, key)
		return
	}
	v.ips[key] = statusIP{uid: st.UID, ip: ip.Unmap()}
}

func (v *view) records() map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for key, g := range v.groups {
		if s, ok := v.ips[key]; ok && g.active && s.uid == g.uid {
			out[strings.ToLower(g.fqdn)] = s.ip
		}
	}
	return out
}
