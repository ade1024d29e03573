package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/gorilla/websocket"

	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// fakeClock is a settable clock for session expiry.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testNode is the node the tests' groups are bound to.
const testNode = "node-1"

// fakeNodes are nodes by name; any other is unavailable.
type fakeNodes map[string]nodeapi.Service

func (f fakeNodes) Service(_ context.Context, node string) (nodeapi.Service, error) {
	svc, ok := f[node]
	if !ok {
		return nil, fmt.Errorf("node '%s' cannot be reached: %w", node, errdefs.ErrUnavailable)
	}
	return svc, nil
}

// bind places the group at key on node, as the scheduler does.
func bind(t *testing.T, st *store.Store, key, node string) {
	t.Helper()
	groups := store.NewTyped[types.ContainerGroup](st, types.PrefixGroups)
	g, _, err := groups.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	g.NodeName = node
	if _, err := groups.Put(context.Background(), key, g); err != nil {
		t.Fatal(err)
	}
}

// fakeExecer is a node: it serves logs (the last lines of logs), and
// records exec and attach requests and runs the test's functions.
type fakeExecer struct {
	logs    string
	logErr  error
	mu      sync.Mutex
	execs   []nodeapi.ExecRequest
	attachs []nodeapi.AttachRequest
	exec    func(ctx context.Context, req nodeapi.ExecRequest) (uint32, error)
	attach  func(ctx context.Context, req nodeapi.AttachRequest) error
}

func (f *fakeExecer) Exec(ctx context.Context, req nodeapi.ExecRequest) (uint32, error) {
	f.mu.Lock()
	f.execs = append(f.execs, req)
	fn := f.exec
	f.mu.Unlock()
	return fn(ctx, req)
}

func (f *fakeExecer) Attach(ctx context.Context, req nodeapi.AttachRequest) error {
	f.mu.Lock()
	f.attachs = append(f.attachs, req)
	fn := f.attach
	f.mu.Unlock()
	return fn(ctx, req)
}

func (f *fakeExecer) ReadLog(_ context.Context, req nodeapi.LogRequest) (string, error) {
	if f.logErr != nil {
		return "", f.logErr
	}
	return tailOf(f.logs, req.Tail), nil
}

func (f *fakeExecer) calls() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.execs), len(f.attachs)
}

// echoUntilQuit writes back what it reads, prefixed, until a message holds
// "quit", then exits 7.
func echoUntilQuit(_ context.Context, req nodeapi.ExecRequest) (uint32, error) {
	buf := make([]byte, 1024)
	for {
		n, err := req.Stdin.Read(buf)
		if err != nil {
			return 0, err
		}
		if bytes.Contains(buf[:n], []byte("quit")) {
			return 7, nil
		}
		fmt.Fprintf(req.Output, "got:%s", buf[:n])
	}
}

type execEnv struct {
	*env
	api    *Server
	clock  *fakeClock
	execer *fakeExecer
	groups store.Typed[types.ContainerGroup]
	status store.Typed[types.GroupStatus]
}

const sessionTTL = 5 * time.Second

// newExecEnv serves an API with a fake execer, a fake clock and one group
// g1 whose container "web" the agent reports Running.
func newExecEnv(t *testing.T) *execEnv {
	t.Helper()
	cli, err := embedetcd.NewClient(context.Background(), etcdEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	st := store.New(cli, fmt.Sprintf("/test-%d/", prefixSeq.Add(1)))
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	fx := &fakeExecer{exec: echoUntilQuit, attach: func(ctx context.Context, req nodeapi.AttachRequest) error {
		fmt.Fprint(req.Output, "line 1\n")
		<-ctx.Done()
		return nil
	}}
	api := New(Options{Store: st, Token: testToken, NodeServices: fakeNodes{testNode: fx}, Now: clock.now, SessionTTL: sessionTTL})
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	t.Cleanup(api.CloseStreams)
	e := &execEnv{
		env: &env{t: t, srv: srv, store: st}, api: api, clock: clock, execer: fx,
		groups: store.NewTyped[types.ContainerGroup](st, types.PrefixGroups),
		status: store.NewTyped[types.GroupStatus](st, types.PrefixGroupStatus),
	}
	e.createRG()
	if code, _, body := e.do("PUT", cgPath+"g1"+apiV, validGroup); code != http.StatusCreated {
		t.Fatalf("create g1: %d %v", code, body)
	}
	bind(t, st, types.GroupKey(sub, "rg1", "g1"), testNode)
	e.setState("Running")
	return e
}

// setState reports g1's container web in state ("" removes the status).
func (e *execEnv) setState(state string) {
	e.t.Helper()
	ctx := context.Background()
	g := e.group()
	if state == "" {
		if err := e.status.Delete(ctx, g.Key(), 0); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	st := types.GroupStatus{UID: g.UID, ObservedGeneration: g.Generation, ProvisioningState: types.ProvisioningSucceeded,
		Containers: []types.ContainerStatus{{Name: "web", Current: types.ContainerState{State: state}}}}
	if _, err := e.status.Put(ctx, g.Key(), st); err != nil {
		e.t.Fatal(err)
	}
}

func (e *execEnv) group() types.ContainerGroup {
	e.t.Helper()
	g, _, err := e.groups.Get(context.Background(), types.GroupKey(sub, "rg1", "g1"))
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

// post hands out a session and returns its URI and password.
func (e *execEnv) post(kind, body string) (string, string) {
	e.t.Helper()
	code, _, out := e.do("POST", cgPath+"g1/containers/web/"+kind+apiV, body)
	if code != http.StatusOK {
		e.t.Fatalf("POST %s: %d %v", kind, code, out)
	}
	uri, _ := out["webSocketUri"].(string)
	pw, _ := out["password"].(string)
	return uri, pw
}

func (e *execEnv) dial(uri string, h http.Header) *websocket.Conn {
	e.t.Helper()
	d := websocket.Dialer{TLSClientConfig: e.srv.Client().Transport.(*http.Transport).TLSClientConfig}
	conn, resp, err := d.Dial(uri, h)
	if err != nil {
		e.t.Fatalf("dial %s: %v (%v)", uri, err, resp)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

// readToClose reads until the server closes and returns the data and the
// close frame.
func readToClose(t *testing.T, conn *websocket.Conn) (string, *websocket.CloseError) {
	t.Helper()
	var out strings.Builder
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return out.String(), ce
			}
			t.Fatalf("read: %v (output so far %q)", err, out.String())
		}
		out.Write(b)
	}
}

func checkClose(t *testing.T, ce *websocket.CloseError, code int, text string) {
	t.Helper()
	if ce.Code != code || !strings.Contains(ce.Text, text) {
		t.Errorf("got close %d %q, want %d containing %q", ce.Code, ce.Text, code, text)
	}
}

func TestExecPost(t *testing.T) {
	e := newExecEnv(t)
	path := cgPath + "g1/containers/web/exec" + apiV
	tests := []struct {
		name, path, body, state string
		auth                    string
		wantStatus              int
		wantCode                string
	}{
		{name: "missing command", path: path, body: `{}`, wantStatus: 400, wantCode: "InvalidExecCommand"},
		{name: "blank command", path: path, body: `{"command": "   "}`, wantStatus: 400, wantCode: "InvalidExecCommand"},
		{name: "unterminated quote", path: path, body: `{"command": "sh -c 'echo"}`, wantStatus: 400, wantCode: "InvalidExecCommand"},
		{name: "negative rows", path: path, body: `{"command": "sh", "terminalSize": {"rows": -1, "cols": 80}}`, wantStatus: 400, wantCode: "InvalidTerminalSize"},
		{name: "huge cols", path: path, body: `{"command": "sh", "terminalSize": {"rows": 24, "cols": 100000}}`, wantStatus: 400, wantCode: "InvalidTerminalSize"},
		{name: "no body", path: path, body: ``, wantStatus: 400, wantCode: "InvalidRequestContent"},
		{name: "unknown container", path: cgPath + "g1/containers/nope/exec" + apiV, body: `{"command": "sh"}`, wantStatus: 404, wantCode: "ContainerNotFound"},
		{name: "unknown group", path: cgPath + "g2/containers/web/exec" + apiV, body: `{"command": "sh"}`, wantStatus: 404, wantCode: "ResourceNotFound"},
		{name: "terminated container", path: path, body: `{"command": "sh"}`, state: "Terminated", wantStatus: 409, wantCode: "ContainerNotRunning"},
		{name: "no status yet", path: path, body: `{"command": "sh"}`, state: "-", wantStatus: 409, wantCode: "ContainerNotRunning"},
		{name: "attach on terminated container", path: cgPath + "g1/containers/web/attach" + apiV, state: "Waiting", wantStatus: 409, wantCode: "ContainerNotRunning"},
		{name: "no bearer token", path: path, body: `{"command": "sh"}`, auth: "-", wantStatus: 401, wantCode: "AuthenticationFailed"},
		{name: "no api-version", path: cgPath + "g1/containers/web/exec", body: `{"command": "sh"}`, wantStatus: 400, wantCode: "MissingApiVersionParameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			switch tt.state {
			case "":
				e.setState("Running")
			case "-":
				e.setState("")
			default:
				e.setState(tt.state)
			}
			auth := "Bearer " + testToken
			if tt.auth == "-" {
				auth = ""
			}
			before := e.api.sessions.len()
			code, _, body := e.doAuth("POST", tt.path, tt.body, auth)
			if code != tt.wantStatus || errCode(body) != tt.wantCode {
				t.Errorf("got %d %s (%s), want %d %s", code, errCode(body), errMessage(body), tt.wantStatus, tt.wantCode)
			}
			if n := e.api.sessions.len(); n != before {
				t.Errorf("a refused POST made a session (%d -> %d)", before, n)
			}
		})
	}
	e.t = t
	e.setState("Running")

	t.Run("a running container gets a session on the host the client used", func(t *testing.T) {
		e.t = t
		host := strings.TrimPrefix(e.srv.URL, "https://")
		for _, tt := range []struct{ kind, body, query string }{
			{"exec", `{"command": "/bin/sh"}`, "api-version=1.0&rows=24&cols=80"},
			{"exec", `{"command": "/bin/sh", "terminalSize": {"rows": 50, "cols": 132}}`, "api-version=1.0&rows=50&cols=132"},
			{"attach", ``, "api-version=1.0"},
		} {
			uri, pw := e.post(tt.kind, tt.body)
			u, err := url.Parse(uri)
			if err != nil {
				t.Fatal(err)
			}
			re := regexp.MustCompile(`^/` + tt.kind + `stream/sessionId/[0-9a-f-]{36}$`)
			if u.Scheme != "wss" || u.Host != host || !re.MatchString(u.Path) || u.RawQuery != tt.query {
				t.Errorf("%s: got URI %q, want wss://%s/%sstream/sessionId/<uuid>?%s", tt.kind, uri, host, tt.kind, tt.query)
			}
			if !regexp.MustCompile(`^[A-Za-z0-9]{32}$`).MatchString(pw) {
				t.Errorf("%s: got password %q, want 32 letters and digits", tt.kind, pw)
			}
		}
	})
}

func TestExecStream(t *testing.T) {
	e := newExecEnv(t)

	t.Run("stdin and output flow until the process exits", func(t *testing.T) {
		e.t = t
		uri, pw := e.post("exec", `{"command": "sh -c 'echo \"a  b\"'", "terminalSize": {"rows": 30, "cols": 100}}`)
		conn := e.dial(uri, nil) // no Authorization: the password is the key
		if err := conn.WriteMessage(websocket.TextMessage, []byte(pw)); err != nil {
			t.Fatal(err)
		}
		_ = conn.WriteMessage(websocket.BinaryMessage, []byte("one"))
		_, b, err := conn.ReadMessage()
		if err != nil || string(b) != "got:one" {
			t.Fatalf("got %q %v, want got:one", b, err)
		}
		_ = conn.WriteMessage(websocket.TextMessage, []byte("two"))
		typ, b, err := conn.ReadMessage()
		if err != nil || string(b) != "got:two" || typ != websocket.BinaryMessage {
			t.Fatalf("got %d %q %v, want a binary got:two", typ, b, err)
		}
		_ = conn.WriteMessage(websocket.BinaryMessage, []byte("quit"))
		_, ce := readToClose(t, conn)
		checkClose(t, ce, websocket.CloseNormalClosure, "exit code 7")

		g := e.group()
		e.execer.mu.Lock()
		req := e.execer.execs[len(e.execer.execs)-1]
		e.execer.mu.Unlock()
		sid := uri[strings.LastIndex(uri, "/")+1 : strings.Index(uri, "?")]
		if got := strings.Join(req.Args, "|"); got != `sh|-c|echo "a  b"` {
			t.Errorf("got args %q, want shell-split words", got)
		}
		if req.Group.UID != g.UID || req.Container != "web" || req.Rows != 30 || req.Cols != 100 || req.ID != "berth-exec-"+sid {
			t.Errorf("got request %+v, want group %s, container web, 30x100, id berth-exec-%s", req, g.UID, sid)
		}
	})

	// refused connects and checks that the execer was not called.
	refused := func(t *testing.T, uri, pw string, h http.Header, want string) {
		t.Helper()
		execs, attachs := e.execer.calls()
		conn := e.dial(uri, h)
		if pw != "" {
			_ = conn.WriteMessage(websocket.TextMessage, []byte(pw))
		}
		out, ce := readToClose(t, conn)
		checkClose(t, ce, websocket.ClosePolicyViolation, want)
		if out != "" {
			t.Errorf("a refused session sent %q", out)
		}
		if e2, a2 := e.execer.calls(); e2 != execs || a2 != attachs {
			t.Errorf("a refused session reached the execer")
		}
	}

	t.Run("a wrong password is refused and uses up the session", func(t *testing.T) {
		e.t = t
		uri, pw := e.post("exec", `{"command": "sh"}`)
		refused(t, uri, strings.Repeat("x", 32), nil, "wrong session password")
		refused(t, uri, pw, nil, "already used")
	})

	t.Run("a password works once", func(t *testing.T) {
		e.t = t
		uri, pw := e.post("exec", `{"command": "sh"}`)
		conn := e.dial(uri, nil)
		_ = conn.WriteMessage(websocket.TextMessage, []byte(pw))
		_ = conn.WriteMessage(websocket.TextMessage, []byte("quit"))
		_, ce := readToClose(t, conn)
		checkClose(t, ce, websocket.CloseNormalClosure, "exit code 7")
		refused(t, uri, pw, nil, "already used")
	})

	t.Run("an expired password is refused", func(t *testing.T) {
		e.t = t
		uri, pw := e.post("exec", `{"command": "sh"}`)
		e.clock.advance(sessionTTL)
		refused(t, uri, pw, nil, "expired")
	})

	t.Run("an unknown session is refused", func(t *testing.T) {
		e.t = t
		uri, pw := e.post("exec", `{"command": "sh"}`)
		refused(t, uri[:strings.Index(uri, "sessionId/")]+"sessionId/00000000-0000-0000-0000-000000000000", pw, nil, "unknown session")
	})

	t.Run("an exec password does not open an attach stream", func(t *testing.T) {
		e.t = t
		uri, pw := e.post("exec", `{"command": "sh"}`)
		refused(t, strings.Replace(uri, "/execstream/", "/attachstream/", 1), "", http.Header{"Authorization": {pw}}, "not of this kind")
	})

	t.Run("a failing exec reports its error and closes with 1011", func(t *testing.T) {
		e.t = t
		e.execer.mu.Lock()
		e.execer.exec = func(context.Context, nodeapi.ExecRequest) (uint32, error) {
			return 0, errors.New(`exec: "nope": executable file not found in $PATH`)
		}
		e.execer.mu.Unlock()
		defer func() { e.execer.mu.Lock(); e.execer.exec = echoUntilQuit; e.execer.mu.Unlock() }()
		uri, pw := e.post("exec", `{"command": "nope"}`)
		conn := e.dial(uri, nil)
		_ = conn.WriteMessage(websocket.TextMessage, []byte(pw))
		out, ce := readToClose(t, conn)
		if !strings.Contains(out, `"nope": executable file not found`) {
			t.Errorf("got output %q, want the error", out)
		}
		checkClose(t, ce, websocket.CloseInternalServerErr, "executable file not found")
	})

	t.Run("closing the socket cancels the exec", func(t *testing.T) {
		e.t = t
		canceled := make(chan struct{})
		e.execer.mu.Lock()
		e.execer.exec = func(ctx context.Context, _ nodeapi.ExecRequest) (uint32, error) {
			<-ctx.Done()
			close(canceled)
			return 0, ctx.Err()
		}
		e.execer.mu.Unlock()
		defer func() { e.execer.mu.Lock(); e.execer.exec = echoUntilQuit; e.execer.mu.Unlock() }()
		uri, pw := e.post("exec", `{"command": "sleep 100"}`)
		conn := e.dial(uri, nil)
		_ = conn.WriteMessage(websocket.TextMessage, []byte(pw))
		time.Sleep(50 * time.Millisecond)
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		conn.Close()
		select {
		case <-canceled:
		case <-time.After(5 * time.Second):
			t.Fatal("the exec's context did not end when the client closed")
		}
	})

	t.Run("a session of a replaced group incarnation is refused", func(t *testing.T) {
		e.t = t
		uri, pw := e.post("exec", `{"command": "sh"}`)
		g, rev, err := e.groups.Get(context.Background(), types.GroupKey(sub, "rg1", "g1"))
		if err != nil {
			t.Fatal(err)
		}
		oldUID := g.UID
		g.UID = "another-incarnation"
		if _, err := e.groups.Update(context.Background(), g.Key(), g, rev); err != nil {
			t.Fatal(err)
		}
		defer func() {
			g, rev, _ := e.groups.Get(context.Background(), types.GroupKey(sub, "rg1", "g1"))
			g.UID = oldUID
			_, _ = e.groups.Update(context.Background(), g.Key(), g, rev)
		}()
		conn := e.dial(uri, nil)
		_ = conn.WriteMessage(websocket.TextMessage, []byte(pw))
		_, ce := readToClose(t, conn)
		checkClose(t, ce, websocket.CloseInternalServerErr, "deleted")
	})

	t.Run("attach takes the password in the Authorization header or as the first message", func(t *testing.T) {
		e.t = t
		for _, how := range []string{"header", "bearer header", "message"} {
			uri, pw := e.post("attach", "")
			var conn *websocket.Conn
			switch how {
			case "header":
				conn = e.dial(uri, http.Header{"Authorization": {pw}})
			case "bearer header":
				conn = e.dial(uri, http.Header{"Authorization": {"Bearer " + pw}})
			default:
				conn = e.dial(uri, nil)
				_ = conn.WriteMessage(websocket.TextMessage, []byte(pw))
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			typ, b, err := conn.ReadMessage()
			if err != nil || string(b) != "line 1\n" || typ != websocket.BinaryMessage {
				t.Errorf("%s: got %d %q %v, want a binary frame of the output", how, typ, b, err)
			}
			conn.Close()
		}
		uri, _ := e.post("attach", "")
		refused(t, uri, "", http.Header{"Authorization": {"wrong"}}, "wrong session password")
	})

	t.Run("a session of a group whose node cannot be reached fails", func(t *testing.T) {
		e.t = t
		key := types.GroupKey(sub, "rg1", "g1")
		for _, kind := range []string{"exec", "attach"} {
			body := ""
			if kind == "exec" {
				body = `{"command": "sh"}`
			}
			uri, pw := e.post(kind, body)
			bind(t, e.store, key, "node-gone")
			execs, attachs := e.execer.calls()
			conn := e.dial(uri, nil)
			_ = conn.WriteMessage(websocket.TextMessage, []byte(pw))
			out, ce := readToClose(t, conn)
			bind(t, e.store, key, testNode)
			if !strings.Contains(out, "node-gone") {
				t.Errorf("%s: got output %q, want the error naming the node", kind, out)
			}
			checkClose(t, ce, websocket.CloseInternalServerErr, "cannot be reached")
			if e2, a2 := e.execer.calls(); e2 != execs || a2 != attachs {
				t.Errorf("%s: the session reached another node", kind)
			}
		}
	})

	t.Run("CloseStreams ends running sessions and refuses new ones", func(t *testing.T) {
		e.t = t
		uri, pw := e.post("attach", "")
		conn := e.dial(uri, http.Header{"Authorization": {pw}})
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := conn.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		go func() { e.api.CloseStreams(); close(closed) }()
		_, ce := readToClose(t, conn)
		checkClose(t, ce, websocket.CloseGoingAway, "")
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("CloseStreams did not return")
		}
		uri, _ = e.post("attach", "")
		d := websocket.Dialer{TLSClientConfig: e.srv.Client().Transport.(*http.Transport).TLSClientConfig}
		_, resp, err := d.Dial(uri, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("after CloseStreams: got %v %v, want 503", err, resp)
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
	})
}

func TestContainerLogs_FromTheGroupsNode(t *testing.T) {
	nodes := fakeNodes{
		"node-1": &fakeExecer{logs: "on one\n"},
		"node-2": &fakeExecer{logs: "on two\n"},
		"node-3": &fakeExecer{logErr: fmt.Errorf("container group 'g1' (incarnation x) is not on this node: %w", errdefs.ErrNotFound)},
	}
	e := newEnvOpts(t, func(o *Options) { o.NodeServices = nodes })
	e.createRG()
	if code, _, body := e.do("PUT", cgPath+"g1"+apiV, validGroup); code != http.StatusCreated {
		t.Fatalf("create g1: %d %v", code, body)
	}
	logs := cgPath + "g1/containers/web/logs" + apiV
	key := types.GroupKey(sub, "rg1", "g1")

	if code, _, body := e.do("GET", logs, ""); code != http.StatusConflict || errCode(body) != "ContainerGroupTransitioning" {
		t.Errorf("logs of a group on no node = %d %v; want 409 ContainerGroupTransitioning", code, body)
	}
	bind(t, e.store, key, "node-2")
	if code, _, body := e.do("GET", logs, ""); code != http.StatusOK || body["content"] != "on two\n" {
		t.Errorf("logs of a group on node-2 = %d %v; want node-2's", code, body)
	}
	bind(t, e.store, key, "node-9")
	if code, _, body := e.do("GET", logs, ""); code != http.StatusServiceUnavailable || errCode(body) != "ServiceUnavailable" {
		t.Errorf("logs of a group on an unreachable node = %d %v; want 503 ServiceUnavailable", code, body)
	}
	bind(t, e.store, key, "node-3")
	if code, _, body := e.do("GET", logs, ""); code != http.StatusNotFound {
		t.Errorf("logs that the node does not have = %d %v; want 404", code, body)
	}
}

func TestSessions(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	ss := newSessions(10*time.Second, clock.now)
	mk := func(kind string) session {
		s, err := ss.add(session{Kind: kind, GroupKey: "k", GroupUID: "u", Container: "c", Command: []string{"sh"}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("a session is taken once, with its binding", func(t *testing.T) {
		s := mk(sessionExec)
		got, err := ss.take(s.ID, sessionExec, s.Password)
		if err != nil || got.GroupUID != "u" || got.Container != "c" || got.Command[0] != "sh" {
			t.Fatalf("take: %+v %v", got, err)
		}
		if _, err := ss.take(s.ID, sessionExec, s.Password); err != errSessionUsed {
			t.Errorf("second take: got %v, want %v", err, errSessionUsed)
		}
	})
	t.Run("a wrong password uses the session up", func(t *testing.T) {
		s := mk(sessionExec)
		if _, err := ss.take(s.ID, sessionExec, "x"); err != errSessionPassword {
			t.Errorf("got %v, want %v", err, errSessionPassword)
		}
		if _, err := ss.take(s.ID, sessionExec, s.Password); err != errSessionUsed {
			t.Errorf("got %v, want %v", err, errSessionUsed)
		}
	})
	t.Run("the kind must match", func(t *testing.T) {
		s := mk(sessionAttach)
		if _, err := ss.take(s.ID, sessionExec, s.Password); err != errSessionKind {
			t.Errorf("got %v, want %v", err, errSessionKind)
		}
		if _, err := ss.take(s.ID, sessionAttach, s.Password); err != nil {
			t.Errorf("right kind after wrong kind: %v", err)
		}
	})
	t.Run("a session expires after its TTL and is then forgotten", func(t *testing.T) {
		s := mk(sessionExec)
		clock.advance(10*time.Second - time.Nanosecond)
		early := mk(sessionExec)
		if _, err := ss.take(early.ID, sessionExec, early.Password); err != nil {
			t.Fatalf("fresh session: %v", err)
		}
		clock.advance(time.Nanosecond)
		if _, err := ss.take(s.ID, sessionExec, s.Password); err != errSessionExpired {
			t.Errorf("got %v, want %v", err, errSessionExpired)
		}
		if _, err := ss.take(s.ID, sessionExec, s.Password); err != errSessionUnknown {
			t.Errorf("after expiry: got %v, want %v", err, errSessionUnknown)
		}
		clock.advance(time.Minute)
		mk(sessionExec) // sweeps
		if n := ss.len(); n != 1 {
			t.Errorf("%d sessions kept after expiry, want only the new one", n)
		}
	})
	t.Run("passwords differ", func(t *testing.T) {
		seen := map[string]bool{}
		for range 100 {
			s := mk(sessionExec)
			if seen[s.Password] || len(s.Password) != passwordLength {
				t.Fatalf("password %q repeated or of the wrong length", s.Password)
			}
			seen[s.Password] = true
		}
	})
}
