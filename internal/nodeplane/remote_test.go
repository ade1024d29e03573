package nodeplane_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/fake"
	"github.com/berth-dev/berth/internal/apiserver"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/controllers/controllertest"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/pki/pkitest"
	"github.com/berth-dev/berth/internal/types"
)

// nodeIdentity names the node of a client certificate "node:<name>".
func nodeIdentity(c *x509.Certificate) (string, bool) {
	return strings.CutPrefix(c.Subject.CommonName, "node:")
}

// serveTLS serves h as the API is served: TLS with HTTP/2, client
// certificates verified when given.
func serveTLS(t *testing.T, ca *pkitest.CA, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true // as the API's server: the watches share a connection
	ts.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.MustIssue("api", true)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool,
	}
	ts.StartTLS()
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts
}

// apiFixture is the API serving the node protocol over a test store.
type apiFixture struct {
	env   *controllertest.Env
	clock *fake.Clock
	ca    *pkitest.CA
	api   http.Handler
	ts    *httptest.Server
}

func startAPI(t *testing.T) *apiFixture { return startAPIWith(t, true) }

func startAPIWith(t *testing.T, informers bool) *apiFixture {
	env, srv, clk := startServer(t, informers)
	ca := pkitest.MustNew()
	api := apiserver.New(apiserver.Options{
		Store: env.Store, Token: "admin", Nodes: srv, NodeIdentity: nodeIdentity,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return &apiFixture{env: env, clock: clk, ca: ca, api: api, ts: serveTLS(t, ca, api)}
}

// remote is node's Remote with certNode's certificate (none for ""),
// talking to servers (the fixture's API when none are given).
func (f *apiFixture) remote(t *testing.T, node, certNode string, servers ...string) *nodeplane.Remote {
	t.Helper()
	return newRemote(t, f.ca, nodeplane.RemoteOptions{Node: node, Servers: servers}, certNode, f.ts.URL)
}

func newRemote(t *testing.T, ca *pkitest.CA, o nodeplane.RemoteOptions, certNode string, dflt string) *nodeplane.Remote {
	t.Helper()
	if len(o.Servers) == 0 {
		o.Servers = []string{dflt}
	}
	o.TLS = &tls.Config{RootCAs: ca.Pool}
	if certNode != "" {
		o.TLS.Certificates = []tls.Certificate{ca.MustIssue("node:"+certNode, false)}
	}
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := nodeplane.NewRemote(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestNewRemote_RefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    nodeplane.RemoteOptions
	}{
		{"no server", nodeplane.RemoteOptions{Node: "n1"}},
		{"plain http", nodeplane.RemoteOptions{Node: "n1", Servers: []string{"http://127.0.0.1:1"}}},
		{"not a URL", nodeplane.RemoteOptions{Node: "n1", Servers: []string{"127.0.0.1:1"}}},
		{"bad node name", nodeplane.RemoteOptions{Node: "N_1", Servers: []string{"https://127.0.0.1:1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := nodeplane.NewRemote(tc.o); !errdefs.IsInvalidArgument(err) {
				t.Errorf("NewRemote = %v, want InvalidArgument", err)
			}
		})
	}
}

// A node's certificate is its identity: it cannot act as another node,
// and without one (and without the admin token) nothing is served.
func TestRemote_NodeActsOnlyAsItself(t *testing.T) {
	f := startAPI(t)
	ctx := t.Context()
	g := controllertest.Group("victim", 1, 1)
	g.NodeName = "n2"
	if _, err := f.env.Groups.Put(ctx, g.Key(), g); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		certNode string
		is       func(error) bool
		class    string
	}{
		{"another node's certificate", "n1", errdefs.IsPermissionDenied, "PermissionDenied"},
		{"no certificate", "", errdefs.IsUnauthorized, "Unauthenticated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.remote(t, "n2", tc.certNode)
			calls := map[string]error{}
			_, calls["register"] = r.Register(ctx, types.Node{})
			calls["renew lease"] = r.RenewLease(ctx)
			_, _, calls["assigned"] = r.Assigned().List(ctx)
			_, calls["last status"] = r.LastStatus(ctx, g.Key())
			calls["report status"] = r.ReportStatus(ctx, g.Key(), &types.GroupStatus{UID: g.UID, State: types.GroupFailed})
			calls["torn down"] = r.ReportTornDown(ctx, g.Key(), g.UID)
			for name, err := range calls {
				if !tc.is(err) {
					t.Errorf("%s = %v, want %s", name, err, tc.class)
				}
			}
			if tc.certNode != "" && !strings.Contains(fmt.Sprint(calls["register"]), "may not act as node 'n2'") {
				t.Errorf("register = %v, want the server's message", calls["register"])
			}
		})
	}
	if _, _, err := f.env.Nodes.Get(ctx, "n2"); !errdefs.IsNotFound(err) {
		t.Errorf("node n2 after the refused registers: %v, want none", err)
	}
	if _, _, err := f.env.Statuses.Get(ctx, g.Key()); !errdefs.IsNotFound(err) {
		t.Errorf("status of n2's group after the refused reports: %v, want none", err)
	}
	// The watch is refused as well: the consumer is told to list (which
	// fails the same way) rather than left waiting.
	r := f.remote(t, "n2", "n1")
	if ev, ok := <-r.Assigned().Watch(ctx, 0); !ok || ev.Type != controller.EventReset {
		t.Errorf("refused watch: %v %v, want a reset", ev.Type, ok)
	}
}

// counting counts the requests h serves.
type counting struct {
	h http.Handler
	n atomic.Int64
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	c.h.ServeHTTP(w, r)
}

// fixedError answers every request with status and an ARM error body.
func fixedError(status int, code, message string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, message)
	})
}

// deadURL is an https URL where nothing listens.
func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr
}

func TestRemote_Failover(t *testing.T) {
	f := startAPI(t)
	ctx := t.Context()
	live := &counting{h: f.api}
	liveTS := serveTLS(t, f.ca, live)

	t.Run("a server that cannot be reached is skipped", func(t *testing.T) {
		r := f.remote(t, "n-fo1", "n-fo1", deadURL(t), liveTS.URL)
		if _, err := r.Register(ctx, types.Node{}); err != nil {
			t.Fatalf("register: %v", err)
		}
		if _, _, err := r.Nodes().List(ctx); err != nil {
			t.Fatalf("list: %v", err)
		}
	})

	t.Run("a server answering 5xx is skipped, then no longer asked", func(t *testing.T) {
		failing := &counting{h: fixedError(http.StatusServiceUnavailable, "ServiceUnavailable", "etcd has no leader")}
		r := f.remote(t, "n-fo2", "n-fo2", serveTLS(t, f.ca, failing).URL, liveTS.URL)
		before := live.n.Load()
		if _, err := r.Register(ctx, types.Node{}); err != nil {
			t.Fatalf("register: %v", err)
		}
		if err := r.RenewLease(ctx); err != nil {
			t.Fatalf("renew: %v", err)
		}
		if n, m := failing.n.Load(), live.n.Load()-before; n != 1 || m != 2 {
			t.Errorf("the failing server got %d requests, the live one %d; want 1 and 2: requests stay with the server that answered", n, m)
		}
	})

	t.Run("a 4xx is an answer, not a failure", func(t *testing.T) {
		refusing := &counting{h: fixedError(http.StatusNotFound, "NotFound", "no such route")}
		r := f.remote(t, "n-fo3", "n-fo3", serveTLS(t, f.ca, refusing).URL, liveTS.URL)
		before := live.n.Load()
		err := r.RenewLease(ctx)
		if !errdefs.IsNotFound(err) || live.n.Load() != before {
			t.Errorf("renew = %v with %d requests to the next server; want NotFound, none", err, live.n.Load()-before)
		}
	})

	t.Run("every server down", func(t *testing.T) {
		r := f.remote(t, "n-fo4", "n-fo4", deadURL(t), deadURL(t))
		if err := r.RenewLease(ctx); !errdefs.IsUnavailable(err) {
			t.Errorf("renew = %v, want Unavailable", err)
		}
	})
}

// The ARM error bodies come back as errdefs classes, with the server's
// message.
func TestRemote_ErrorClasses(t *testing.T) {
	ca := pkitest.MustNew()
	for _, tc := range []struct {
		status int
		is     func(error) bool
	}{
		{http.StatusBadRequest, errdefs.IsInvalidArgument},
		{http.StatusUnauthorized, errdefs.IsUnauthorized},
		{http.StatusForbidden, errdefs.IsPermissionDenied},
		{http.StatusNotFound, errdefs.IsNotFound},
		{http.StatusConflict, errdefs.IsConflict},
		{http.StatusPreconditionFailed, func(err error) bool { return errors.Is(err, nodeplane.ErrNotBound) }},
		{http.StatusServiceUnavailable, errdefs.IsUnavailable},
		{http.StatusInternalServerError, errdefs.IsInternal},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			ts := serveTLS(t, ca, fixedError(tc.status, "SomeCode", "the server's words"))
			r := newRemote(t, ca, nodeplane.RemoteOptions{Node: "n1"}, "n1", ts.URL)
			err := r.ReportStatus(t.Context(), "sub/rg/g", &types.GroupStatus{UID: "u"})
			if !tc.is(err) || !strings.Contains(fmt.Sprint(err), "the server's words") {
				t.Errorf("report = %v, want its class and the server's message", err)
			}
			var re *nodeplane.RemoteError
			if !errors.As(err, &re) || re.Status != tc.status || re.Code != "SomeCode" {
				t.Errorf("report = %#v, want a RemoteError with status %d", err, tc.status)
			}
		})
	}
}

// A watch whose stream the server closes goes on from where it was:
// nothing is lost, nothing asks for a relist.
func TestRemote_WatchResumesAfterTheServerClosesTheStream(t *testing.T) {
	f := startAPI(t)
	ctx := t.Context()
	var watches atomic.Int64
	var mu sync.Mutex
	var revisions []string
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" {
			watches.Add(1)
			mu.Lock()
			revisions = append(revisions, r.URL.Query().Get("revision"))
			mu.Unlock()
		}
		f.api.ServeHTTP(w, r)
	})
	ts := serveTLS(t, f.ca, counted)
	e := &planeEnv{env: f.env, clock: f.clock}
	src := newRemote(t, f.ca, nodeplane.RemoteOptions{Node: "n-w"}, "n-w", ts.URL).Assigned()
	var rev int64
	eventually(t, "the informers are synced", func() (bool, string) {
		_, r, err := src.List(ctx)
		rev = r
		return err == nil, fmt.Sprint(err)
	})
	ch := src.Watch(ctx, rev)

	g1 := putGroup(t, e, "w1", "n-w", "")
	ev := nextEvent(t, ch, "n-w", g1.Key())
	ts.CloseClientConnections()
	g2 := putGroup(t, e, "w2", "n-w", "")
	if ev2 := nextEvent(t, ch, "n-w", g2.Key()); ev2.Type != controller.EventPut {
		t.Fatalf("after the stream was cut: %v %s", ev2.Type, ev2.Key)
	}
	mu.Lock()
	defer mu.Unlock()
	if watches.Load() < 2 {
		t.Fatalf("%d watch requests; the stream was not cut", watches.Load())
	}
	// The second watch started from the first one's last event (or the
	// bookmark after it), never from the beginning.
	if got := revisions[1]; got != fmt.Sprint(ev.Revision) {
		t.Errorf("the watch resumed from revision %s, want %d", got, ev.Revision)
	}
}

// A stream that goes silent (a server or network that died without
// closing the connection) is reconnected from the last revision; when the
// reconnected one is silent too, the consumer is told to list again.
func TestRemote_SilentWatch(t *testing.T) {
	ca := pkitest.MustNew()
	var mu sync.Mutex
	var revisions []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		revisions = append(revisions, r.URL.Query().Get("revision"))
		first := len(revisions) == 1
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		if first {
			fmt.Fprintln(w, `{"type":1,"key":"sub/rg/g","value":{"name":"g","nodeName":"n1"},"revision":7}`)
			fmt.Fprintln(w, `{"type":4,"revision":9}`)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ts := serveTLS(t, ca, h)
	r := newRemote(t, ca, nodeplane.RemoteOptions{Node: "n1", WatchIdle: 300 * time.Millisecond}, "n1", ts.URL)
	start := time.Now()
	ch := r.Assigned().Watch(t.Context(), 3)
	var got []controller.Event[types.ContainerGroup]
	for ev := range ch {
		got = append(got, ev)
		if time.Since(start) > 10*time.Second {
			t.Fatal("the watch did not end")
		}
	}
	if len(got) != 2 || got[0].Type != controller.EventPut || got[0].Key != "sub/rg/g" || got[1].Type != controller.EventReset {
		t.Fatalf("events = %+v, want the put, then a reset (bookmarks are not passed on)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(revisions) != 2 || revisions[0] != "3" || revisions[1] != "9" {
		t.Errorf("watch requests from revisions %v, want 3 then 9 (the bookmark's)", revisions)
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("the watch ended after %s, before two silences of 300 ms", d)
	}
}

// A watch ends when its context does, or when the Remote is closed, even
// while the server says nothing.
func TestRemote_WatchEnds(t *testing.T) {
	ca := pkitest.MustNew()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ts := serveTLS(t, ca, h)
	for _, tc := range []struct {
		name string
		stop func(context.CancelFunc, *nodeplane.Remote)
	}{
		{"context", func(cancel context.CancelFunc, _ *nodeplane.Remote) { cancel() }},
		{"close", func(_ context.CancelFunc, r *nodeplane.Remote) { r.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRemote(t, ca, nodeplane.RemoteOptions{Node: "n1"}, "n1", ts.URL)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ch := r.Endpoints().Watch(ctx, 0)
			time.Sleep(100 * time.Millisecond) // let it connect
			tc.stop(cancel, r)
			select {
			case ev, ok := <-ch:
				if ok {
					t.Fatalf("event %+v after the end, want the channel closed", ev)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the watch did not end")
			}
		})
	}
}
