package nodeclient_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/nodeclient"
	"github.com/berth-dev/berth/internal/nodeserver"
	"github.com/berth-dev/berth/internal/pki/pkitest"
	"github.com/berth-dev/berth/internal/types"
)

// pki is a test CA with its certificates.
type pki struct{ *pkitest.CA }

func newPKI(*testing.T) *pki { return &pki{pkitest.MustNew()} }

// issue signs a certificate for cn, a server one for 127.0.0.1 when
// server is set, else a client one.
func (p *pki) issue(cn string, server bool) tls.Certificate { return p.MustIssue(cn, server) }

// clientTLS is the TLS of an API server holding a certificate for cn.
func (p *pki) clientTLS(cn string) *tls.Config {
	cfg := &tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS12}
	if cn != "" {
		cfg.Certificates = []tls.Certificate{p.issue(cn, false)}
	}
	return cfg
}

// fakeService is a node: one group "g" of incarnation "u1" with container
// "web".
type fakeService struct {
	mu        sync.Mutex
	execs     []nodeapi.ExecRequest
	execEnded atomic.Bool // an Exec returned
}

var errNoGroup = fmt.Errorf("container group 'g' (incarnation u0) is not on this node: %w", errdefs.ErrNotFound)

func (f *fakeService) check(ref nodeapi.GroupRef, container string) error {
	if ref.UID != "u1" {
		return errNoGroup
	}
	if container != "web" {
		return fmt.Errorf("container '%s' is not running: %w", container, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func (f *fakeService) ReadLog(_ context.Context, req nodeapi.LogRequest) (string, error) {
	if err := f.check(req.Group, req.Container); err != nil {
		return "", err
	}
	return fmt.Sprintf("log of %s/%s tail %d\n", req.Group.Key, req.Container, req.Tail), nil
}

// Exec echoes stdin prefixed until it reads "quit" (exit 7) or stdin ends
// (exit 0); it ends with ctx's error when ctx ends first.
func (f *fakeService) Exec(ctx context.Context, req nodeapi.ExecRequest) (uint32, error) {
	defer f.execEnded.Store(true)
	f.mu.Lock()
	f.execs = append(f.execs, req)
	f.mu.Unlock()
	if err := f.check(req.Group, req.Container); err != nil {
		return 0, err
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		buf := make([]byte, 1024)
		for {
			n, err := req.Stdin.Read(buf)
			if n > 0 {
				lines <- string(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			time.Sleep(50 * time.Millisecond) // the kill takes a moment
			return 0, ctx.Err()
		case l, ok := <-lines:
			if !ok {
				return 0, nil
			}
			if strings.Contains(l, "quit") {
				return 7, nil
			}
			fmt.Fprintf(req.Output, "got:%s", l)
		}
	}
}

// Attach prints two lines, then follows until ctx ends, or ends at once
// for container "done".
func (f *fakeService) Attach(ctx context.Context, req nodeapi.AttachRequest) error {
	if req.Container == "done" {
		fmt.Fprint(req.Output, "last words\n")
		return nil
	}
	if err := f.check(req.Group, req.Container); err != nil {
		return err
	}
	fmt.Fprint(req.Output, "line 1\n")
	fmt.Fprint(req.Output, "line 2\n")
	<-ctx.Done()
	return nil
}

type node struct {
	pki  *pki
	svc  *fakeService
	srv  *nodeserver.Server
	http *httptest.Server
}

// newNode serves a fakeService over TLS; only certificates for "api" get
// in.
func newNode(t *testing.T) *node {
	t.Helper()
	p := newPKI(t)
	svc := &fakeService{}
	srv := nodeserver.New(svc, func(c *x509.Certificate) bool { return c.Subject.CommonName == "api" }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	hs := httptest.NewUnstartedServer(srv)
	hs.TLS = nodeserver.TLSConfig(p.issue("node-1", true), p.Pool)
	hs.StartTLS()
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return &node{pki: p, svc: svc, srv: srv, http: hs}
}

func (n *node) client(cn string) *nodeclient.Client {
	return nodeclient.New(n.http.URL, n.pki.clientTLS(cn))
}

var ref = nodeapi.GroupRef{Key: "/s/rg/g", UID: "u1", Name: "g"}

func TestClient_ReadLog(t *testing.T) {
	n := newNode(t)
	c := n.client("api")
	ctx := context.Background()

	got, err := c.ReadLog(ctx, nodeapi.LogRequest{Group: ref, Container: "web", Tail: 3})
	if want := "log of /s/rg/g/web tail 3\n"; err != nil || got != want {
		t.Errorf("ReadLog = %q, %v; want %q", got, err, want)
	}
	stale := ref
	stale.UID = "u0"
	_, err = c.ReadLog(ctx, nodeapi.LogRequest{Group: stale, Container: "web"})
	if !errdefs.IsNotFound(err) || err.Error() != errNoGroup.Error() {
		t.Errorf("ReadLog of another incarnation = %v; want the node's not found error %q", err, errNoGroup)
	}
	if _, err := c.ReadLog(ctx, nodeapi.LogRequest{Group: ref, Container: "side"}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("ReadLog of a stopped container = %v; want failed precondition", err)
	}
	if _, err := c.ReadLog(ctx, nodeapi.LogRequest{Group: ref}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ReadLog without a container = %v; want invalid argument", err)
	}
}

func TestServer_AcceptsOnlyAuthorizedCertificates(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		c    *nodeclient.Client
		want func(error) bool
	}{
		{"a certificate that authorize refuses", n.client("node-2"), errdefs.IsPermissionDenied},
		{"no certificate", n.client(""), errdefs.IsUnauthorized},
		{"a certificate of another CA", nodeclient.New(n.http.URL, func() *tls.Config {
			cfg := n.pki.clientTLS("")
			cfg.Certificates = []tls.Certificate{newPKI(t).issue("api", false)}
			return cfg
		}()), func(err error) bool { return errdefs.IsUnavailable(err) || errdefs.IsUnauthorized(err) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.c.ReadLog(ctx, nodeapi.LogRequest{Group: ref, Container: "web"}); !tc.want(err) {
				t.Errorf("ReadLog = %v", err)
			}
			_, err := tc.c.Exec(ctx, nodeapi.ExecRequest{Group: ref, Container: "web", ID: "e", Args: []string{"sh"}, Stdin: strings.NewReader(""), Output: io.Discard})
			if !tc.want(err) {
				t.Errorf("Exec = %v", err)
			}
			if err := tc.c.Attach(ctx, nodeapi.AttachRequest{Group: ref, Container: "web", Output: io.Discard}); !tc.want(err) {
				t.Errorf("Attach = %v", err)
			}
		})
	}
	if len(n.svc.execs) != 0 {
		t.Errorf("refused callers reached the service: %v", n.svc.execs)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClient_Exec(t *testing.T) {
	n := newNode(t)
	c := n.client("api")
	stdinR, stdinW := io.Pipe()
	defer stdinR.Close()
	var out lockedBuffer
	type result struct {
		code uint32
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := c.Exec(context.Background(), nodeapi.ExecRequest{
			Group: ref, Container: "web", ID: "berth-exec-1", Args: []string{"sh", "-c", "echo 'a b'"},
			Rows: 40, Cols: 120, Stdin: stdinR, Output: &out,
		})
		done <- result{code, err}
	}()

	fmt.Fprint(stdinW, "hello")
	waitFor(t, "the echo of the first input", func() bool { return out.String() == "got:hello" })
	fmt.Fprint(stdinW, "quit")
	select {
	case r := <-done:
		if r.err != nil || r.code != 7 {
			t.Fatalf("Exec = %d, %v; want exit code 7", r.code, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exec did not return after the process exited")
	}
	n.svc.mu.Lock()
	got := n.svc.execs[0]
	n.svc.mu.Unlock()
	if got.ID != "berth-exec-1" || strings.Join(got.Args, "|") != "sh|-c|echo 'a b'" || got.Rows != 40 || got.Cols != 120 || got.Group != ref {
		t.Errorf("the node got %+v", got)
	}
}

func TestClient_ExecEndsWithStdin(t *testing.T) {
	n := newNode(t)
	var out lockedBuffer
	code, err := n.client("api").Exec(context.Background(), nodeapi.ExecRequest{
		Group: ref, Container: "web", ID: "e", Args: []string{"cat"}, Stdin: strings.NewReader("only line"), Output: &out,
	})
	if err != nil || code != 0 || out.String() != "got:only line" {
		t.Errorf("Exec = %d, %v, output %q; want exit 0 after the echo", code, err, out.String())
	}
}

func TestClient_ExecErrorsKeepTheirClass(t *testing.T) {
	n := newNode(t)
	c := n.client("api")
	ctx := context.Background()
	stale := ref
	stale.UID = "u0"
	if _, err := c.Exec(ctx, nodeapi.ExecRequest{Group: stale, Container: "web", ID: "e", Args: []string{"sh"}, Stdin: strings.NewReader("")}); !errdefs.IsNotFound(err) {
		t.Errorf("Exec in another incarnation = %v; want not found", err)
	}
	if _, err := c.Exec(ctx, nodeapi.ExecRequest{Group: ref, Container: "side", ID: "e", Args: []string{"sh"}, Stdin: strings.NewReader("")}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Exec in a stopped container = %v; want failed precondition", err)
	}
	if _, err := c.Exec(ctx, nodeapi.ExecRequest{Group: ref, Container: "web", ID: "e"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Exec without a command = %v; want invalid argument", err)
	}
}

func TestClient_ExecStoppedByContextWaitsForTheNode(t *testing.T) {
	n := newNode(t)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out lockedBuffer
	go func() {
		_, err := n.client("api").Exec(ctx, nodeapi.ExecRequest{Group: ref, Container: "web", ID: "e", Args: []string{"sh"}, Stdin: stdinR, Output: &out})
		done <- err
	}()
	fmt.Fprint(stdinW, "ping")
	waitFor(t, "the session to run", func() bool { return out.String() == "got:ping" })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Exec after cancel = %v; want context.Canceled", err)
		}
		if !n.svc.execEnded.Load() {
			t.Error("Exec returned before the node's exec ended")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exec did not return after its context ended")
	}
}

func TestClient_Attach(t *testing.T) {
	n := newNode(t)
	c := n.client("api")

	t.Run("it streams until the context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var out lockedBuffer
		done := make(chan error, 1)
		go func() { done <- c.Attach(ctx, nodeapi.AttachRequest{Group: ref, Container: "web", Output: &out}) }()
		waitFor(t, "the live output", func() bool { return out.String() == "line 1\nline 2\n" })
		select {
		case err := <-done:
			t.Fatalf("Attach returned while the node still streamed: %v", err)
		default:
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Attach after cancel = %v; want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Attach did not return after its context ended")
		}
	})
	t.Run("it ends when the output ends", func(t *testing.T) {
		var out lockedBuffer
		if err := c.Attach(context.Background(), nodeapi.AttachRequest{Group: ref, Container: "done", Output: &out}); err != nil || out.String() != "last words\n" {
			t.Errorf("Attach = %v with %q; want nil after the last output", err, out.String())
		}
	})
	t.Run("errors keep their class", func(t *testing.T) {
		stale := ref
		stale.UID = "u0"
		if err := c.Attach(context.Background(), nodeapi.AttachRequest{Group: stale, Container: "web", Output: io.Discard}); !errdefs.IsNotFound(err) {
			t.Errorf("Attach to another incarnation = %v; want not found", err)
		}
	})
}

func TestServer_CloseEndsSessions(t *testing.T) {
	n := newNode(t)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	done := make(chan error, 1)
	go func() {
		_, err := n.client("api").Exec(context.Background(), nodeapi.ExecRequest{Group: ref, Container: "web", ID: "e", Args: []string{"sh"}, Stdin: stdinR, Output: io.Discard})
		done <- err
	}()
	waitFor(t, "the exec to start", func() bool {
		n.svc.mu.Lock()
		defer n.svc.mu.Unlock()
		return len(n.svc.execs) == 1
	})
	n.srv.Close()
	if !n.svc.execEnded.Load() {
		t.Error("Close returned before the exec ended")
	}
	select {
	case err := <-done:
		if !errdefs.IsCanceled(err) {
			t.Errorf("Exec ended by the node's Close = %v; want canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exec did not return after the node server closed")
	}
	_, err := n.client("api").Exec(context.Background(), nodeapi.ExecRequest{Group: ref, Container: "web", ID: "e2", Args: []string{"sh"}, Stdin: strings.NewReader("")})
	if !errdefs.IsUnavailable(err) {
		t.Errorf("Exec on a closed node server = %v; want unavailable", err)
	}
}

func TestDialer(t *testing.T) {
	n := newNode(t)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "https://" + ln.Addr().String()
	ln.Close()
	nodes := map[string]types.Node{
		"b":    {Name: "b", Endpoint: n.http.URL},
		"dead": {Name: "dead", Endpoint: deadURL},
		"bare": {Name: "bare"},
	}
	lookup := func(_ context.Context, name string) (types.Node, error) {
		nd, ok := nodes[name]
		if !ok {
			return types.Node{}, fmt.Errorf("node %s: %w", name, errdefs.ErrNotFound)
		}
		return nd, nil
	}
	local := &fakeService{}
	d := nodeclient.NewDialer("a", local, lookup, n.pki.clientTLS("api"))
	ctx := context.Background()

	if svc, err := d.Service(ctx, "a"); err != nil || svc != nodeapi.Service(local) {
		t.Errorf("Service(local) = %v, %v; want the local service", svc, err)
	}
	svc, err := d.Service(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := svc.ReadLog(ctx, nodeapi.LogRequest{Group: ref, Container: "web"}); err != nil || !strings.HasPrefix(got, "log of") {
		t.Errorf("ReadLog on node b = %q, %v", got, err)
	}
	if again, _ := d.Service(ctx, "b"); again != svc {
		t.Error("a second Service(b) made a new client")
	}

	svc, err = d.Service(ctx, "dead")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ReadLog(ctx, nodeapi.LogRequest{Group: ref, Container: "web"}); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "'dead'") {
		t.Errorf("ReadLog on an unreachable node = %v; want unavailable, naming the node", err)
	}
	if _, err := svc.Exec(ctx, nodeapi.ExecRequest{Group: ref, Container: "web", ID: "e", Args: []string{"sh"}}); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "'dead'") {
		t.Errorf("Exec on an unreachable node = %v; want unavailable, naming the node", err)
	}
	for _, name := range []string{"bare", "gone"} {
		if _, err := d.Service(ctx, name); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), name) {
			t.Errorf("Service(%s) = %v; want unavailable, naming the node", name, err)
		}
	}
	if _, err := d.Service(ctx, ""); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Service(\"\") = %v; want failed precondition", err)
	}
}
