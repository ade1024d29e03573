package embedetcd_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/pki"
)

// peerMember is the embedetcd.Config of a member of several, with peer
// TLS from the shared CA in caDir.
func peerMember(t *testing.T, b *pki.Bundle, name string) embedetcd.Config {
	t.Helper()
	dir := t.TempDir()
	pc, err := b.EnsurePeer(filepath.Join(dir, "pki"), "127.0.0.1", embedetcd.PeerCN)
	if err != nil {
		t.Fatal(err)
	}
	return embedetcd.Config{Dir: filepath.Join(dir, "etcd"), Name: name, Logger: etcdtest.Logger(),
		Peer: &embedetcd.Peer{Host: "127.0.0.1", CertFile: pc.CertFile, KeyFile: pc.KeyFile, CAFile: pc.CAFile}}
}

// TestMembers_JoinAsLearnerPromoteRemove is a second server's join as
// the servers do it: added as a learner (no quorum change), started with
// the initial cluster it was given, promoted once caught up, removed.
func TestMembers_JoinAsLearnerPromoteRemove(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := pki.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := embedetcd.Start(ctx, peerMember(t, b, "s1"))
	if err != nil {
		t.Fatalf("start first member: %v", err)
	}
	t.Cleanup(first.Close)
	c1 := etcdtest.Client(t, first)
	if _, err := c1.Put(ctx, "before-join", "v"); err != nil {
		t.Fatal(err)
	}
	members := embedetcd.NewMembers(c1)

	cfg2 := peerMember(t, b, "s2")
	// The peer URL is decided before the member exists, as a joining
	// server sends it with its join.
	cfg2.Peer.Port = freePort(t)
	peerURL := "https://127.0.0.1:" + strconv.Itoa(cfg2.Peer.Port)
	initial, err := members.AddLearner(ctx, "s2", peerURL)
	if err != nil {
		t.Fatalf("AddLearner: %v", err)
	}
	if want := "s1=" + first.PeerURL() + ",s2=" + peerURL; initial != want {
		t.Errorf("initial cluster = %q, want %q", initial, want)
	}
	// Asking again (a retried join) gives the same answer, adds nothing.
	if again, err := members.AddLearner(ctx, "s2", peerURL); err != nil || again != initial {
		t.Errorf("AddLearner again = %q, %v; want %q", again, err, initial)
	}
	if _, err := members.AddLearner(ctx, "s1", "https://127.0.0.1:1"); !errdefs.IsAlreadyExists(err) {
		t.Errorf("AddLearner of a name in use = %v, want already exists", err)
	}
	// One voting member, one learner: writes go on before s2 even starts.
	if _, err := c1.Put(ctx, "while-joining", "v"); err != nil {
		t.Fatalf("write with a learner that has not started: %v", err)
	}

	cfg2.InitialCluster = initial
	second, err := embedetcd.Start(ctx, cfg2)
	if err != nil {
		t.Fatalf("start joining member: %v", err)
	}
	t.Cleanup(second.Close)
	for {
		err := members.Promote(ctx, "s2")
		if err == nil {
			break
		}
		if !errdefs.IsUnavailable(err) || ctx.Err() != nil {
			t.Fatalf("Promote: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	list, err := members.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "s1" || list[1].Name != "s2" || list[0].Learner || list[1].Learner {
		t.Fatalf("members = %+v, want voting s1 and s2", list)
	}
	if !list[0].Leader && !list[1].Leader {
		t.Errorf("no member is marked leader: %+v", list)
	}
	c2 := etcdtest.Client(t, second)
	resp, err := c2.Get(ctx, "before-join")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the joined member does not serve the data written before: %v %v", resp, err)
	}

	// etcd refuses a removal until the leader has seen the others
	// connected for a while: the removal must not break a quorum.
	for {
		err := members.Remove(ctx, "s2")
		if err == nil {
			break
		}
		if !errdefs.IsUnavailable(err) || ctx.Err() != nil {
			t.Fatalf("Remove: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := members.Remove(ctx, "s2"); !errdefs.IsNotFound(err) {
		t.Errorf("Remove again = %v, want not found", err)
	}
	if _, err := c1.Put(ctx, "after-remove", "v"); err != nil {
		t.Errorf("write after the second member left: %v", err)
	}
	select {
	case err := <-second.Err():
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("removed member stopped: %v", err)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

// TestStart_PeerOnOtherHostRefusesOldDir: a single server's data dir
// cannot silently become a member of several: its peers would not find it.
func TestStart_PeerOnOtherHostRefusesOldDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, err := embedetcd.Start(ctx, embedetcd.Config{Dir: dir, Logger: etcdtest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	b, err := pki.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := peerMember(t, b, "")
	cfg.Dir = dir
	_, err = embedetcd.Start(ctx, cfg)
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("Start = %v, want failed precondition", err)
	}
}
