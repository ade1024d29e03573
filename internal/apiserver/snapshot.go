package apiserver

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

// The admin's backup of the store:
//
//	GET /berth/v1/cluster/snapshot   an etcd snapshot of every object (admin), application/octet-stream
//
// The snapshot is written to a temporary file before the answer starts,
// so that a snapshot that fails answers an error, not a torn stream that
// looks like a short file; the answer then carries its length and its
// SHA-256 (SnapshotSHA256Header), which the client checks.

// SnapshotSHA256Header carries the hex SHA-256 of the snapshot's bytes.
const SnapshotSHA256Header = "X-Berth-Snapshot-Sha256"

func (s *Server) snapshotRoutes() {
	s.mux.HandleFunc("GET "+nodeAPIPrefix+"cluster/snapshot", s.serveSnapshot)
}

func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	if !callerOf(r).admin {
		s.writeError(w, r, armError(http.StatusForbidden, "AuthorizationFailed",
			fmt.Sprintf("Only the admin may call %s %s.", r.Method, r.URL.Path)))
		return
	}
	if s.snapshot == nil {
		s.writeError(w, r, armError(http.StatusNotImplemented, "SnapshotNotSupported",
			"This server cannot take snapshots of its store."))
		return
	}
	ctx := r.Context()
	f, err := os.CreateTemp("", "berth-snapshot-*.db")
	if err != nil {
		s.writeError(w, r, fmt.Errorf("snapshot: %w", err))
		return
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	// Only the server reads it; it holds every secret of the store.
	if err := f.Chmod(0o600); err != nil {
		s.writeError(w, r, fmt.Errorf("snapshot: %w", err))
		return
	}
	sum := sha256.New()
	if err := s.snapshot(ctx, io.MultiWriter(f, sum)); err != nil {
		s.writeError(w, r, fmt.Errorf("snapshot: %w", err))
		return
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		s.writeError(w, r, fmt.Errorf("snapshot: %w", err))
		return
	}
	digest := fmt.Sprintf("%x", sum.Sum(nil))
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Content-Disposition", `attachment; filename="berth-snapshot.db"`)
	h.Set(SnapshotSHA256Header, digest)
	w.WriteHeader(http.StatusOK)
	n, err := io.Copy(w, f)
	if err != nil {
		// The client sees fewer bytes than Content-Length and no match
		// of the digest.
		s.log.Warn("snapshot not sent whole", "sent", n, "size", size, "err", err)
		return
	}
	s.log.Info("snapshot sent", "size", size, "sha256", digest)
}
