package embedetcd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// restoreRevisionBump is how far a restore moves the store's revision past
// the snapshot's, marking everything before compacted. Agents and watchers
// of the old cluster hold revisions from after the snapshot was taken; on
// the restored store such a revision would name the future, and a watch
// from it would silently miss every write until the revision caught up.
// Past the bump, it is compacted history instead, and they list afresh.
const restoreRevisionBump = 1_000_000_000

// restoreTempPrefix names the directory a restore builds the member in,
// inside Dir, so that the rename that publishes it stays on one file
// system and a restore that fails leaves no member behind.
const restoreTempPrefix = ".restore-"

// SnapshotInfo describes a snapshot file that passed its checks.
type SnapshotInfo struct {
	// Size is the file's size in bytes.
	Size int64
	// SHA256 is the hex digest of the whole file.
	SHA256 string
	// Revision is the store's revision when the snapshot was taken.
	Revision int64
	// Keys is how many keys the store held.
	Keys int
}

// Snapshot writes a snapshot of the store cli reaches to w: etcd's
// database followed by its SHA-256, the format Restore and etcdutl read.
// An error may come after part of it was written; callers that hand the
// snapshot on write it to a file first.
func Snapshot(ctx context.Context, cli *clientv3.Client, w io.Writer) error {
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("embedetcd: snapshot: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("embedetcd: snapshot: %w", err)
	}
	return nil
}

// Snapshotter is Snapshot of the store cli reaches, for those that take
// snapshots without knowing of etcd.
func Snapshotter(cli *clientv3.Client) func(context.Context, io.Writer) error {
	return func(ctx context.Context, w io.Writer) error { return Snapshot(ctx, cli, w) }
}

// CheckSnapshot verifies the snapshot file at path, its checksum and its
// database, and describes it. A damaged file, or one that is no etcd
// snapshot, is errdefs.ErrDataLoss.
func CheckSnapshot(path string) (SnapshotInfo, error) {
	size, sum, err := verifyChecksum(path)
	if err != nil {
		return SnapshotInfo{}, err
	}
	// etcdutl's Status checks the database itself (bolt's consistency
	// check) and reads its revision; it opens the file read-only.
	st, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("embedetcd: snapshot %s is damaged: %w: %w", path, errdefs.ErrDataLoss, err)
	}
	return SnapshotInfo{Size: size, SHA256: sum, Revision: st.Revision, Keys: st.TotalKey}, nil
}

// verifyChecksum checks the SHA-256 etcd appends to a snapshot against
// the database before it: a truncated or altered file fails here, before
// anything is written.
func verifyChecksum(path string) (size int64, sum string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", fmt.Errorf("embedetcd: snapshot: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, "", fmt.Errorf("embedetcd: snapshot: %w", err)
	}
	size = fi.Size()
	// etcd's database is a whole number of pages; the snapshot adds the
	// digest (etcdutl's own test of whether a file carries one).
	if size < 512+sha256.Size || size%512 != sha256.Size {
		return 0, "", fmt.Errorf("embedetcd: snapshot %s (%d bytes) is truncated or not an etcd snapshot: it does not end in a checksum: %w",
			path, size, errdefs.ErrDataLoss)
	}
	db, whole := sha256.New(), sha256.New()
	if _, err := io.CopyN(io.MultiWriter(db, whole), f, size-sha256.Size); err != nil {
		return 0, "", fmt.Errorf("embedetcd: read snapshot %s: %w", path, err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return 0, "", fmt.Errorf("embedetcd: read snapshot %s: %w", path, err)
	}
	if !bytes.Equal(db.Sum(nil), want) {
		return 0, "", fmt.Errorf("embedetcd: snapshot %s is damaged: its checksum does not match its content: %w", path, errdefs.ErrDataLoss)
	}
	whole.Write(want)
	return size, fmt.Sprintf("%x", whole.Sum(nil)), nil
}

// Restore makes cfg.Dir hold a member restored from the snapshot at
// snapshotPath, as the only member of a new cluster, before the member's
// first start: Start then runs it with the store as it was. The member
// gets the name and peer URL Start will give it. A Dir that already holds
// a member is refused, and a snapshot that fails its checks leaves Dir
// without one.
func Restore(ctx context.Context, snapshotPath string, cfg Config) (retErr error) {
	if cfg.Dir == "" {
		return fmt.Errorf("embedetcd: data dir is required: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.InitialCluster != "" {
		return fmt.Errorf("embedetcd: a restored member starts a new cluster; it cannot join one: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "member")); err == nil {
		return fmt.Errorf("embedetcd: %s already holds an etcd member: a snapshot restores only into a new data dir: %w",
			cfg.Dir, errdefs.ErrFailedPrecondition)
	}
	info, err := CheckSnapshot(snapshotPath)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedetcd: restore: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("embedetcd: create data dir: %w", err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("embedetcd: data dir permissions: %w", err)
	}
	if err := removeStaleRestores(cfg.Dir); err != nil {
		return err
	}
	p, err := resolvePorts(cfg.Dir, cfg)
	if err != nil {
		return err
	}

	tmp, err := os.MkdirTemp(cfg.Dir, restoreTempPrefix)
	if err != nil {
		return fmt.Errorf("embedetcd: restore: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(tmp); err != nil && retErr == nil {
			retErr = fmt.Errorf("embedetcd: restore: clean up: %w", err)
		}
	}()
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default().With("component", "etcd")
	}
	err = snapshot.NewV3(zap.New(newSlogCore(lg, zapcore.WarnLevel, nil))).Restore(snapshot.RestoreConfig{
		SnapshotPath:  snapshotPath,
		Name:          p.Name,
		OutputDataDir: tmp,
		PeerURLs:      []string{p.PeerURL},
		// As Start makes a new cluster: the member's own name and URL,
		// and the same token.
		InitialCluster:      p.Name + "=" + p.PeerURL,
		InitialClusterToken: "berth",
		RevisionBump:        restoreRevisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		return fmt.Errorf("embedetcd: restore %s: %w", snapshotPath, err)
	}
	// One rename publishes the member: until it, Dir has none.
	if err := os.Rename(filepath.Join(tmp, "member"), filepath.Join(cfg.Dir, "member")); err != nil {
		return fmt.Errorf("embedetcd: restore: %w", err)
	}
	lg.Info("restored etcd snapshot", "snapshot", snapshotPath, "dir", cfg.Dir, "member", p.Name,
		"revision", info.Revision, "keys", info.Keys, "sha256", info.SHA256)
	return nil
}

// removeStaleRestores removes what a restore that crashed left in dir.
func removeStaleRestores(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("embedetcd: restore: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), restoreTempPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("embedetcd: restore: %w", err)
			}
		}
	}
	return nil
}
