package leader_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/leader"
)

const prefix = "/test/leader"

// candidate runs one server's campaign and records when it leads.
type candidate struct {
	name    string
	cancel  context.CancelFunc
	done    chan error
	leading chan struct{} // closed when elected
	lost    chan struct{} // closed when its lead's context ended
}

func campaign(t *testing.T, cli *clientv3.Client, name string, ttl time.Duration) *candidate {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{name: name, cancel: cancel, done: make(chan error, 1), leading: make(chan struct{}), lost: make(chan struct{})}
	var once, lostOnce sync.Once
	go func() {
		c.done <- leader.Run(ctx, leader.Options{Client: cli, Prefix: prefix, Identity: name, TTL: ttl},
			func(ctx context.Context) error {
				once.Do(func() { close(c.leading) })
				<-ctx.Done()
				lostOnce.Do(func() { close(c.lost) })
				return nil
			})
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting until %s", what)
	}
}

func leaderName(t *testing.T, cli *clientv3.Client) string {
	t.Helper()
	l, err := leader.Current(context.Background(), cli, prefix)
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	return l.Leader
}

// TestRun_OneLeaderThenHandOver: of two candidates one leads; when it
// stops, it resigns and the other takes over without waiting for a TTL.
func TestRun_OneLeaderThenHandOver(t *testing.T) {
	cli := etcdtest.NewClient(t)
	if _, err := leader.Current(context.Background(), cli, prefix); !errdefs.IsNotFound(err) {
		t.Fatalf("Current before any campaign = %v, want not found", err)
	}
	a := campaign(t, cli, "a", time.Minute)
	waitFor(t, a.leading, "a leads")
	b := campaign(t, cli, "b", time.Minute)
	select {
	case <-b.leading:
		t.Fatal("b leads while a does")
	case <-time.After(500 * time.Millisecond):
	}
	if got := leaderName(t, cli); got != "a" {
		t.Errorf("leader = %q, want a", got)
	}
	a.cancel()
	waitFor(t, a.lost, "a's work stops")
	// With a one-minute TTL only a resignation explains a quick takeover.
	waitFor(t, b.leading, "b takes over")
	if got := leaderName(t, cli); got != "b" {
		t.Errorf("leader = %q, want b", got)
	}
}

// TestRun_LostSessionEndsTheLead: when the leader's session lease is gone
// (as after its etcd was cut off for longer than the TTL), its work is
// stopped and it campaigns again.
func TestRun_LostSessionEndsTheLead(t *testing.T) {
	cli := etcdtest.NewClient(t)
	a := campaign(t, cli, "a", 2*time.Second)
	waitFor(t, a.leading, "a leads")
	resp, err := cli.Get(context.Background(), prefix+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("election keys: %v %v", resp, err)
	}
	if _, err := cli.Revoke(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, a.lost, "a's work stops after its session is gone")
	// It campaigns again and, alone, leads again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := leader.Current(context.Background(), cli, prefix)
		if err == nil && l.Leader == "a" && !l.ElectedAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a did not lead again: %+v %v", l, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRun_WorkErrorEndsRun: a failure of the work itself is not the
// election's to hide.
func TestRun_WorkErrorEndsRun(t *testing.T) {
	cli := etcdtest.NewClient(t)
	boom := errors.New("boom")
	err := leader.Run(context.Background(), leader.Options{Client: cli, Prefix: prefix, Identity: "a"},
		func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
}
