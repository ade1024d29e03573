package embedetcd_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
)

// snapshotOf starts a member, stores keys k0..k(n-1), and returns the
// path of a snapshot of it and the revision of the last write.
func snapshotOf(t *testing.T, n int) (string, int64) {
	t.Helper()
	ctx := context.Background()
	e := etcdtest.Start(t)
	c := etcdtest.Client(t, e)
	var rev int64
	for i := range n {
		resp, err := c.Put(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		rev = resp.Header.Revision
	}
	var buf bytes.Buffer
	if err := embedetcd.Snapshot(ctx, c, &buf); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, rev
}

func TestRestore_KeysAreBack(t *testing.T) {
	ctx := context.Background()
	path, rev := snapshotOf(t, 20)

	info, err := embedetcd.CheckSnapshot(path)
	if err != nil {
		t.Fatalf("check snapshot: %v", err)
	}
	b, _ := os.ReadFile(path)
	if want := fmt.Sprintf("%x", sha256.Sum256(b)); info.SHA256 != want || info.Size != int64(len(b)) {
		t.Errorf("info = %+v, want size %d sha256 %s", info, len(b), want)
	}
	if info.Revision != rev || info.Keys != 20 {
		t.Errorf("info = %+v, want revision %d and 20 keys", info, rev)
	}

	cfg := embedetcd.Config{Dir: filepath.Join(t.TempDir(), "etcd"), Name: "restored", Logger: etcdtest.Logger()}
	if err := embedetcd.Restore(ctx, path, cfg); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !hasMember(cfg.Dir) {
		t.Fatal("no member after restore")
	}
	entries, _ := os.ReadDir(cfg.Dir)
	for _, e := range entries {
		if e.Name() != "member" && e.Name() != "ports.json" {
			t.Errorf("restore left %s in the data dir", e.Name())
		}
	}
	// The member was restored with the name and peer URL remembered
	// for Start.
	b, err = os.ReadFile(filepath.Join(cfg.Dir, "ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stored struct{ Name, PeerURL string }
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	name, peerURL := stored.Name, stored.PeerURL

	e, err := embedetcd.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start the restored member: %v", err)
	}
	t.Cleanup(e.Close)
	if e.Name() != name || e.PeerURL() != peerURL || name != "restored" {
		t.Errorf("started as %s on %s; restored as %s on %s, want the name restored", e.Name(), e.PeerURL(), name, peerURL)
	}
	c := etcdtest.Client(t, e)
	resp, err := c.Get(ctx, "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 20 {
		t.Fatalf("restored %d keys, want 20", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) != "v"+string(kv.Key[1:]) {
			t.Errorf("%s = %s", kv.Key, kv.Value)
		}
	}
	// A watcher of the old cluster, at a revision from after the
	// snapshot, is told to list again rather than wait for it.
	if resp.Header.Revision <= rev {
		t.Errorf("restored revision %d is not past the snapshot's %d", resp.Header.Revision, rev)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wr := <-c.Watch(wctx, "k", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	if wr.CompactRevision == 0 {
		t.Errorf("a watch from revision %d on the restored store got %+v, want a compaction", rev+1, wr)
	}
	members, err := c.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(members.Members) != 1 || members.Members[0].Name != "restored" {
		t.Errorf("members = %v, want only restored", members.Members)
	}
	if _, err := c.Put(ctx, "after", "restore"); err != nil {
		t.Errorf("write to the restored member: %v", err)
	}
}

func TestRestore_Refused(t *testing.T) {
	ctx := context.Background()
	path, _ := snapshotOf(t, 3)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	// A checksum that matches, of pages that are no database.
	garbage := bytes.Repeat([]byte{0x5a}, 8192)
	sum := sha256.Sum256(garbage)
	garbage = append(garbage, sum[:]...)

	for _, tc := range []struct {
		name    string
		content []byte
		// member: the data dir already holds a member.
		member bool
		is     func(error) bool
	}{
		{"a data dir that holds a member", good, true, errdefs.IsFailedPrecondition},
		{"a truncated snapshot", good[:len(good)-100], false, errdefs.IsDataLoss},
		{"a snapshot cut after its database", good[:len(good)-sha256.Size], false, errdefs.IsDataLoss},
		{"a snapshot with a changed byte", flipped, false, errdefs.IsDataLoss},
		{"a file that is no snapshot", bytes.Repeat([]byte("berth"), 1000), false, errdefs.IsDataLoss},
		{"an empty file", nil, false, errdefs.IsDataLoss},
		{"a checksummed file that is no database", garbage, false, errdefs.IsDataLoss},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := filepath.Join(t.TempDir(), "snap.db")
			if err := os.WriteFile(snap, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := embedetcd.Config{Dir: t.TempDir(), Logger: etcdtest.Logger()}
			if tc.member {
				e, err := embedetcd.Start(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				c := etcdtest.Client(t, e)
				if _, err := c.Put(ctx, "mine", "kept"); err != nil {
					t.Fatal(err)
				}
				c.Close()
				e.Close()
			}
			err := embedetcd.Restore(ctx, snap, cfg)
			if err == nil || !tc.is(err) {
				t.Fatalf("restore = %v, want it refused with the right class", err)
			}
			t.Logf("refused: %v", err)
			entries, _ := os.ReadDir(cfg.Dir)
			for _, e := range entries {
				if filepath.Ext(e.Name()) != ".json" && e.Name() != "member" {
					t.Errorf("a refused restore left %s", e.Name())
				}
			}
			if tc.member {
				// The member is untouched.
				e, err := embedetcd.Start(ctx, cfg)
				if err != nil {
					t.Fatalf("restart the member: %v", err)
				}
				t.Cleanup(e.Close)
				resp, err := etcdtest.Client(t, e).Get(ctx, "mine")
				if err != nil || len(resp.Kvs) != 1 {
					t.Errorf("the member lost its key: %v %v", resp, err)
				}
				return
			}
			if hasMember(cfg.Dir) {
				t.Error("a refused restore left a member")
			}
		})
	}
}

func hasMember(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "member"))
	return err == nil
}
