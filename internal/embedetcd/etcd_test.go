package embedetcd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
)

func TestStart_RestartKeepsDataAndPorts(t *testing.T) {
	ctx := context.Background()
	cfg := embedetcd.Config{Dir: t.TempDir(), Logger: etcdtest.Logger()}

	first, err := embedetcd.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	t.Cleanup(first.Close)
	c := etcdtest.Client(t, first)
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	c.Close()
	first.Close()
	first.Close() // a second Close must not panic
	waitClosed(t, first.Err())

	b, err := os.ReadFile(filepath.Join(cfg.Dir, "ports.json"))
	if err != nil {
		t.Fatalf("ports are not remembered: %v", err)
	}
	var stored struct{ ClientURL string }
	if err := json.Unmarshal(b, &stored); err != nil || stored.ClientURL != first.Endpoints()[0] {
		t.Errorf("ports.json = %s (%v), want client URL %s", b, err, first.Endpoints()[0])
	}

	second, err := embedetcd.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	t.Cleanup(second.Close)
	if got, want := second.Endpoints(), first.Endpoints(); !slices.Equal(got, want) {
		t.Errorf("endpoints after restart = %v, want %v", got, want)
	}
	resp, err := etcdtest.Client(t, second).Get(ctx, "k")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Errorf("after restart k = %v, want v", resp.Kvs)
	}
}

func TestStart_ConfiguredURLs(t *testing.T) {
	client, peer := freePort(t), freePort(t)
	cfg := embedetcd.Config{
		Dir:       filepath.Join(t.TempDir(), "etcd"), // Start creates it
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", client),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", peer),
		Logger:    etcdtest.Logger(),
	}
	e, err := embedetcd.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(e.Close)
	if got := e.Endpoints(); !slices.Equal(got, []string{cfg.ClientURL}) {
		t.Errorf("endpoints = %v, want [%s]", got, cfg.ClientURL)
	}
	etcdtest.Client(t, e) // answers on the configured port
	fi, err := os.Stat(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir permissions = %o, want 700", perm)
	}
}

func TestStart_Failures(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		cfg  func(t *testing.T) embedetcd.Config
		want func(error) bool
	}{
		{
			name: "a missing data dir is an invalid argument",
			ctx:  context.Background(),
			cfg:  func(t *testing.T) embedetcd.Config { return embedetcd.Config{} },
			want: errdefs.IsInvalidArgument,
		},
		{
			name: "a canceled context stops the start",
			ctx:  canceled,
			cfg:  func(t *testing.T) embedetcd.Config { return embedetcd.Config{Dir: t.TempDir()} },
			want: func(err error) bool { return errors.Is(err, context.Canceled) },
		},
		{
			name: "a busy client port fails and frees the peer port",
			ctx:  context.Background(),
			cfg: func(t *testing.T) embedetcd.Config {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				peer := fmt.Sprintf("127.0.0.1:%d", freePort(t))
				t.Cleanup(func() {
					// Start must have closed the peer listener it opened.
					l, err := net.Listen("tcp", peer)
					if err != nil {
						t.Errorf("peer port still held after failed start: %v", err)
						return
					}
					l.Close()
				})
				return embedetcd.Config{
					Dir:       t.TempDir(),
					ClientURL: "http://" + l.Addr().String(),
					PeerURL:   "http://" + peer,
				}
			},
			want: func(err error) bool { return err != nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg(t)
			cfg.Logger = etcdtest.Logger()
			e, err := embedetcd.Start(tt.ctx, cfg)
			if err == nil {
				e.Close()
				t.Fatal("Start succeeded, want an error")
			}
			t.Logf("Start: %v", err)
			if !tt.want(err) {
				t.Errorf("Start error = %v, want another class", err)
			}
		})
	}
}

func TestNewClient_Failures(t *testing.T) {
	tests := []struct {
		name      string
		endpoints []string
		want      func(error) bool
	}{
		{
			name: "no endpoints is an invalid argument",
			want: errdefs.IsInvalidArgument,
		},
		{
			name:      "an endpoint nobody listens on is unavailable",
			endpoints: []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))},
			want:      errdefs.IsUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			c, err := embedetcd.NewClient(ctx, tt.endpoints)
			if err == nil {
				c.Close()
				t.Fatal("NewClient succeeded, want an error")
			}
			if !tt.want(err) {
				t.Errorf("NewClient error = %v, want another class", err)
			}
		})
	}
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitClosed(t *testing.T, ch <-chan error) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("Err channel not closed after Close")
		}
	}
}
