package dns

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/store"
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

// Sync keeps t equal to the names of the running groups in the store until
// ctx ends: a group's FQDN maps to the IP its agent reported, for as long
// as the group is neither stopped nor being deleted. It lists, then
// watches groups and statuses, and lists again when a watch lost events.
func Sync(ctx context.Context, st *store.Store, zone string, t *Table, log *slog.Logger) error {
	groups := store.NewTyped[types.ContainerGroup](st, types.PrefixGroups)
	statuses := store.NewTyped[types.GroupStatus](st, types.PrefixGroupStatus)
	for ctx.Err() == nil {
		v := view{groups: map[string]groupName{}, ips: map[string]statusIP{}}
		gs, grev, err := groups.List(ctx)
		if err == nil {
			var ss []store.Item[types.GroupStatus]
			var srev int64
			if ss, srev, err = statuses.List(ctx); err == nil {
				for _, it := range gs {
					v.putGroup(it.Key, &it.Value)
				}
				for _, it := range ss {
					v.putStatus(it.Key, &it.Value)
				}
				t.Set(zone, v.records())
				wctx, cancel := context.WithCancel(ctx)
				v.follow(wctx, groups.Watch(wctx, grev), statuses.Watch(wctx, srev), zone, t, log)
				cancel() // ends the other watch too
				continue
			}
		}
		if ctx.Err() != nil {
			break
		}
		log.Warn("dns: list groups", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
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

// follow applies the watch events until a watch reports lost events or
// ends; the caller then lists again.
func (v *view) follow(ctx context.Context, gw, sw <-chan store.Event, zone string, t *Table, log *slog.Logger) {
	for {
		var ev store.Event
		var ok, isGroup bool
		select {
		case ev, ok = <-gw:
			isGroup = true
		case ev, ok = <-sw:
		case <-ctx.Done():
			return
		}
		if !ok || ev.Type == store.EventReset {
			return
		}
		switch {
		case ev.Type == store.EventDelete && isGroup:
			delete(v.groups, ev.Key)
		case ev.Type == store.EventDelete:
			delete(v.ips, ev.Key)
		case isGroup:
			var g types.ContainerGroup
			if err := ev.Decode(&g); err != nil {
				log.Warn("dns: decode group", "key", ev.Key, "err", err)
				continue
			}
			v.putGroup(ev.Key, &g)
		default:
			var st types.GroupStatus
			if err := ev.Decode(&st); err != nil {
				log.Warn("dns: decode group status", "key", ev.Key, "err", err)
				continue
			}
			v.putStatus(ev.Key, &st)
		}
		t.Set(zone, v.records())
	}
}
