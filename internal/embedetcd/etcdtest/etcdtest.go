// Package etcdtest starts a throw-away embedded etcd for tests of packages
// that need a real store: fakes get revisions and watches wrong.
package etcdtest

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-dev/berth/internal/embedetcd"
)

// Start runs a single-member etcd in a temporary directory and stops it
// when the test ends.
func Start(t testing.TB) *embedetcd.Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := embedetcd.Start(ctx, embedetcd.Config{Dir: t.TempDir(), Logger: Logger()})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// NewClient starts an etcd with Start and returns a client for it; both
// are closed when the test ends.
func NewClient(t testing.TB) *clientv3.Client {
	t.Helper()
	return Client(t, Start(t))
}

// Client connects to e and closes the client when the test ends.
func Client(t testing.TB, e *embedetcd.Etcd) *clientv3.Client {
	t.Helper()
	c, err := embedetcd.NewClient(context.Background(), e.Endpoints())
	if err != nil {
		t.Fatalf("connect to etcd: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Logger writes etcd's warnings to stderr. It does not use t.Log: etcd may
// still log from its goroutines while it shuts down after the test ended.
func Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
