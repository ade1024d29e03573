package store

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
)

// breakingWatcher ends every etcd watch after its first response, as a
// lost connection or leader would.
type breakingWatcher struct {
	clientv3.Watcher
	calls atomic.Int32
}

func (w *breakingWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	w.calls.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	in := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		defer cancel()
		for resp := range in {
			if resp.IsProgressNotify() {
				continue
			}
			select {
			case out <- resp:
			case <-ctx.Done():
			}
			return
		}
	}()
	return out
}

func TestStore_WatchResumesWhereItBroke(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := etcdtest.NewClient(t)
	s := New(c, "/test/")
	w := &breakingWatcher{Watcher: c.Watcher}
	s.watcher = w

	ch := s.Watch(ctx, "", 0)
	var want []string
	for i := range 4 {
		key := fmt.Sprintf("k%d", i)
		rev, err := s.Create(ctx, key, i)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s@%d", key, rev))
	}
	var got []string
	for range want {
		select {
		case e := <-ch:
			got = append(got, fmt.Sprintf("%s@%d", e.Key, e.Revision))
		case <-time.After(10 * time.Second):
			t.Fatalf("got %v, then nothing for 10s; want %v", got, want)
		}
	}
	select {
	case e := <-ch:
		t.Errorf("unexpected event %s@%d", e.Key, e.Revision)
	case <-time.After(200 * time.Millisecond):
	}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if n := w.calls.Load(); n < 2 {
		t.Errorf("the watch was set up %d times; the test did not break it", n)
	}
}
