package fake

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"

	"github.com/berth-dev/berth/internal/types"
)

// Plane is an in-memory control plane with the store's semantics that the
// agent relies on: groups and statuses by key, read and written as copies
// (through JSON, as the store does), and RemoveGroup finalising only the
// incarnation it is given. It is safe for concurrent use.
type Plane struct {
	// OnList, when set, runs each time ListGroups has taken its listing
	// (outside the lock).
	OnList func()

	mu       sync.Mutex
	groups   map[string][]byte
	statuses map[string][]byte
	removed  []string
	putErr   error
	puts     int
	subs     map[chan string]bool
}

// NewPlane returns a plane without groups.
func NewPlane() *Plane {
	return &Plane{groups: map[string][]byte{}, statuses: map[string][]byte{}, subs: map[chan string]bool{}}
}

// Put stores g (creates or replaces it) and tells the watchers.
func (p *Plane) Put(g types.ContainerGroup) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.groups[g.Key()] = encode(g)
	p.changed(g.Key())
}

// Delete removes the group at key, as if it had been finalised elsewhere.
func (p *Plane) Delete(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.groups, key)
	p.changed(key)
}

// SetStatus stores st as the reported status of key.
func (p *Plane) SetStatus(key string, st types.GroupStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.statuses[key] = encode(st)
}

// Status returns the reported status of key, nil when there is none.
func (p *Plane) Status(key string) *types.GroupStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return decode[types.GroupStatus](p.statuses[key])
}

// StatusWrites counts the PutStatus calls that succeeded.
func (p *Plane) StatusWrites() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.puts
}

// FailPutStatus makes PutStatus fail with err; nil lets it succeed again.
func (p *Plane) FailPutStatus(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.putErr = err
}

// Removed returns the keys of the groups RemoveGroup removed, in order.
func (p *Plane) Removed() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.removed)
}

// ListGroups returns every group, in key order.
func (p *Plane) ListGroups(context.Context) ([]types.ContainerGroup, error) {
	p.mu.Lock()
	out := make([]types.ContainerGroup, 0, len(p.groups))
	for _, k := range slices.Sorted(maps.Keys(p.groups)) {
		out = append(out, *decode[types.ContainerGroup](p.groups[k]))
	}
	p.mu.Unlock()
	if p.OnList != nil {
		p.OnList()
	}
	return out, nil
}

// GetGroup returns the group at key, nil when there is none.
func (p *Plane) GetGroup(_ context.Context, key string) (*types.ContainerGroup, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return decode[types.ContainerGroup](p.groups[key]), nil
}

// Changes yields the key of every Put and Delete from now on, dropping
// keys when the reader lags (a resync finds them); it closes when ctx ends.
func (p *Plane) Changes(ctx context.Context) <-chan string {
	ch := make(chan string, 64)
	p.mu.Lock()
	p.subs[ch] = true
	p.mu.Unlock()
	go func() {
		<-ctx.Done()
		p.mu.Lock()
		delete(p.subs, ch)
		close(ch)
		p.mu.Unlock()
	}()
	return ch
}

func (p *Plane) changed(key string) {
	for ch := range p.subs {
		select {
		case ch <- key:
		default:
		}
	}
}

// GetStatus returns the reported status of key, nil when there is none.
func (p *Plane) GetStatus(_ context.Context, key string) (*types.GroupStatus, error) {
	return p.Status(key), nil
}

// PutStatus stores st, unless FailPutStatus made it fail.
func (p *Plane) PutStatus(_ context.Context, key string, st *types.GroupStatus) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.putErr != nil {
		return p.putErr
	}
	p.statuses[key] = encode(*st)
	p.puts++
	return nil
}

// RemoveGroup deletes this incarnation of the group and its status; a
// group re-created meanwhile (another UID) is left alone.
func (p *Plane) RemoveGroup(_ context.Context, g *types.ContainerGroup) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := g.Key()
	if st := decode[types.GroupStatus](p.statuses[key]); st != nil && st.UID == g.UID {
		delete(p.statuses, key)
	}
	if cur := decode[types.ContainerGroup](p.groups[key]); cur != nil && cur.UID == g.UID {
		delete(p.groups, key)
		p.removed = append(p.removed, key)
		p.changed(key)
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

// decode returns the value in b, nil for none.
func decode[T any](b []byte) *T {
	if b == nil {
		return nil
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		panic(err)
	}
	return v
}
