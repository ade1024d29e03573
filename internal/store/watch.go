package store

import (
	"context"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-dev/berth/internal/sealing"
)

// EventType says what happened to a key.
type EventType int

const (
	// EventPut: the key was created or changed; Value holds the new value.
	EventPut EventType = iota + 1
	// EventDelete: the key was removed; Value is nil.
	EventDelete
	// EventReset: events were lost (etcd compacted the history the watch
	// needed). The consumer must list again; the watch goes on from the
	// Revision of this event, so a list read after receiving it misses nothing.
	EventReset
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventReset:
		return "reset"
	}
	return "unknown"
}

// Event is one change seen by Watch.
type Event struct {
	Type EventType
	// Key is relative to the store prefix; empty for EventReset.
	Key   string
	Value []byte
	// Revision is the revision of the change (for EventReset: the revision
	// the watch continues after).
	Revision int64
	// storeKey is Key relative to the store prefix, even after a Typed
	// watch made Key relative to its own: sealed secrets are bound to it.
	storeKey string
	sealKey  *sealing.Key
}

// Decode decodes the JSON value of a put event into out, with its secrets
// opened.
func (e Event) Decode(out any) error {
	key := e.storeKey
	if key == "" {
		key = e.Key
	}
	return decode(e.sealKey, key, e.Value, out)
}

const (
	// eventBuffer lets a burst of changes through while the consumer works.
	eventBuffer = 64
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 2 * time.Second
	nowTimeout  = 2 * time.Second
)

// Watch streams the changes under prefix after revision fromRev, in
// revision order. With fromRev 0 it streams the changes made after Watch
// returns (if etcd cannot be reached then, after the watch got through);
// to miss nothing, pass the revision List returned. The channel closes when
// ctx ends or the client is closed. A watch broken by a lost leader or a
// lost connection resumes where it stopped; if etcd compacted past that
// point, Watch sends one EventReset and goes on from the current revision.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan Event {
	out := make(chan Event, eventBuffer)
	if fromRev <= 0 {
		// Fix "now" before returning, so the caller's next write is seen;
		// but never block the caller long on an unreachable etcd.
		gctx, cancel := context.WithTimeout(ctx, nowTimeout)
		if resp, err := s.c.Get(gctx, s.prefix, clientv3.WithCountOnly()); err == nil {
			fromRev = resp.Header.Revision
		}
		cancel()
	}
	go s.watch(ctx, prefix, fromRev, out)
	return out
}

func (s *Store) watch(ctx context.Context, prefix string, fromRev int64, out chan<- Event) {
	defer close(out)
	// next is the first revision not yet delivered. Tracking it ourselves,
	// rather than letting the client resume, makes "from now" and every
	// restart of the etcd watch exact.
	next := fromRev + 1
	if fromRev <= 0 {
		rev, ok := s.currentRevision(ctx)
		if !ok {
			return
		}
		next = rev + 1
	}
	backoff := minBackoff
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.watcher.Watch(wctx, s.prefix+prefix,
			clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithProgressNotify())
		n, compacted, delivered := s.forward(ctx, wch, next, out)
		cancel()
		next = n
		if ctx.Err() != nil || s.c.Ctx().Err() != nil {
			return
		}
		if compacted {
			// Learn the current revision before telling the consumer to
			// relist, so its list is read at or after where we resume.
			rev, ok := s.currentRevision(ctx)
			if !ok {
				return
			}
			next = rev + 1
			if !send(ctx, out, Event{Type: EventReset, Revision: rev}) {
				return
			}
			continue
		}
		if delivered {
			backoff = minBackoff
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// forward sends the events of one etcd watch until it ends. It returns the
// next revision to watch from, whether the watch ended on a compaction, and
// whether it delivered anything.
func (s *Store) forward(ctx context.Context, wch clientv3.WatchChan, next int64, out chan<- Event) (int64, bool, bool) {
	delivered := false
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return next, true, delivered
		}
		if resp.Err() != nil {
			return next, false, delivered
		}
		if resp.IsProgressNotify() {
			// Everything up to the header revision has been sent.
			next = max(next, resp.Header.Revision+1)
			continue
		}
		for _, ev := range resp.Events {
			e := Event{
				Key:      strings.TrimPrefix(string(ev.Kv.Key), s.prefix),
				Revision: ev.Kv.ModRevision,
				sealKey:  s.key,
			}
			e.storeKey = e.Key
			if ev.Type == clientv3.EventTypeDelete {
				e.Type = EventDelete
			} else {
				e.Type = EventPut
				e.Value = ev.Kv.Value
			}
			if !send(ctx, out, e) {
				return next, false, delivered
			}
			next = ev.Kv.ModRevision + 1
			delivered = true
		}
	}
	return next, false, delivered
}

// currentRevision asks etcd for the store revision, retrying until it
// answers or ctx ends.
func (s *Store) currentRevision(ctx context.Context) (int64, bool) {
	backoff := minBackoff
	for {
		resp, err := s.c.Get(ctx, s.prefix, clientv3.WithCountOnly())
		if err == nil {
			return resp.Header.Revision, true
		}
		if ctx.Err() != nil || s.c.Ctx().Err() != nil {
			return 0, false
		}
		if !sleep(ctx, backoff) {
			return 0, false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func send(ctx context.Context, out chan<- Event, e Event) bool {
	select {
	case out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
