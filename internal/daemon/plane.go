package daemon

import (
	"context"
	"errors"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// storePlane is the in-process agent's view of the control plane: it reads
// and writes the store directly. A remote agent would use the API instead.
type storePlane struct {
	store  *store.Store
	groups store.Typed[types.ContainerGroup]
	status store.Typed[types.GroupStatus]
	// dnsNames are the DNS name claims (issue 5).
	dnsNames store.Typed[types.DNSName]
}

var _ agent.ControlPlane = (*storePlane)(nil)

func newStorePlane(s *store.Store) *storePlane {
	return &storePlane{
		store:    s,
		groups:   store.NewTyped[types.ContainerGroup](s, types.PrefixGroups),
		status:   store.NewTyped[types.GroupStatus](s, types.PrefixGroupStatus),
		dnsNames: store.NewTyped[types.DNSName](s, types.PrefixDNSNames),
	}
}

func (p *storePlane) ListGroups(ctx context.Context) ([]types.ContainerGroup, error) {
	items, _, err := p.groups.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]types.ContainerGroup, 0, len(items))
	for _, it := range items {
		out = append(out, it.Value)
	}
	return out, nil
}

func (p *storePlane) GetGroup(ctx context.Context, key string) (*types.ContainerGroup, error) {
	g, _, err := p.groups.Get(ctx, key)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &g, nil
}

// Changes forwards the keys of changed groups; a lost watch history becomes
// a full resync.
func (p *storePlane) Changes(ctx context.Context) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		for ev := range p.groups.Watch(ctx, 0) {
			key := ev.Key
			if ev.Type == store.EventReset {
				key = ""
			}
			select {
			case out <- key:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (p *storePlane) GetStatus(ctx context.Context, key string) (*types.GroupStatus, error) {
	st, _, err := p.status.Get(ctx, key)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &st, nil
}

func (p *storePlane) PutStatus(ctx context.Context, key string, st *types.GroupStatus) error {
	_, err := p.status.Put(ctx, key, *st)
	return err
}

// RemoveGroup deletes the group's status and then the group itself, but
// only this incarnation: a group re-created meanwhile is left alone.
func (p *storePlane) RemoveGroup(ctx context.Context, g *types.ContainerGroup) error {
	if st, rev, err := p.status.Get(ctx, g.Key()); err == nil && st.UID == g.UID {
		if err := p.status.Delete(ctx, g.Key(), rev); err != nil && !errdefs.IsNotFound(err) && !errors.Is(err, errdefs.ErrConflict) {
			return err
		}
	}
	cur, rev, err := p.groups.Get(ctx, g.Key())
	if errdefs.IsNotFound(err) || (err == nil && cur.UID != g.UID) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.groups.Delete(ctx, g.Key(), rev); err != nil {
		return err
	}
	return p.releaseDNSName(ctx, g)
}

// releaseDNSName frees the DNS name the deleted group held (issue 5). A
// claim left behind is harmless: the API treats the claim of a group that
// is gone as stale.
func (p *storePlane) releaseDNSName(ctx context.Context, g *types.ContainerGroup) error {
	if g.Spec.IPAddress == nil || g.Spec.IPAddress.FQDN == "" {
		return nil
	}
	claim, rev, err := p.dnsNames.Get(ctx, g.Spec.IPAddress.FQDN)
	if errdefs.IsNotFound(err) || (err == nil && claim.GroupUID != g.UID) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.dnsNames.Delete(ctx, g.Spec.IPAddress.FQDN, rev); err != nil && !errdefs.IsNotFound(err) && !errors.Is(err, errdefs.ErrConflict) {
		return err
	}
	return nil
}
