package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/gorilla/websocket"

	"github.com/berth-dev/berth/internal/testenv"
)

// tickerCommand prints a line with the time every second, forever.
var tickerCommand = []*string{to.Ptr("/bin/sh"), to.Ptr("-c"), to.Ptr("while true; do echo tick $(date +%s); sleep 1; done")}

// busyboxGroup is a group of one busybox container running command.
func busyboxGroup(image, container, policy string, command []*string) armcontainerinstance.ContainerGroup {
	return armcontainerinstance.ContainerGroup{
		Location: to.Ptr("westus"),
		Properties: &armcontainerinstance.ContainerGroupPropertiesProperties{
			OSType:        to.Ptr(armcontainerinstance.OperatingSystemTypesLinux),
			RestartPolicy: to.Ptr(armcontainerinstance.ContainerGroupRestartPolicy(policy)),
			Containers: []*armcontainerinstance.Container{{
				Name: to.Ptr(container),
				Properties: &armcontainerinstance.ContainerProperties{
					Image:   to.Ptr(image),
					Command: command,
					Resources: &armcontainerinstance.ResourceRequirements{
						Requests: &armcontainerinstance.ResourceRequests{CPU: to.Ptr(0.5), MemoryInGB: to.Ptr(0.25)},
					},
				},
			}},
		},
	}
}

// TestExecAttach covers issue 4 on real containerd: exec sessions (one-shot
// and interactive), attach, the SDK's POSTs and every refusal, and checks
// that no exec process is left in containerd.
func TestExecAttach(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	busybox := testenv.PushBusyboxImage(t, e.reg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	name := "exec-" + randomHex(t, 3)
	if _, err := e.create(ctx, t, name, busyboxGroup(busybox, "ticker", "Always", tickerCommand)); err != nil {
		t.Fatalf("create %s: %v\nserver log:\n%s", name, err, e.logExcerpt("level=ERROR", "level=WARN", name))
	}
	runCtx, cancelRun := context.WithTimeout(ctx, time.Minute)
	e.waitRunning(runCtx, t, name)
	cancelRun()
	ctrID := e.containerID(ctx, t, name, "ticker")

	// Taken now and used last, so that the wait for its expiry overlaps
	// the other subtests.
	expiring := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "echo late"})
	var execIDs []string // every exec session that reached containerd
	done := func(s sessionResp) { execIDs = append(execIDs, "berth-exec-"+s.id(t)) }

	t.Run("exec echo returns its output and closes normally", func(t *testing.T) {
		s := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "echo hello", "terminalSize": map[string]int{"rows": 30, "cols": 100}})
		checkURI(t, s, e.srv.Client.Endpoint, "/execstream/sessionId/", "30", "100")
		out, ce := e.runExec(ctx, t, s, nil)
		done(s)
		if !strings.Contains(out, "hello") {
			t.Errorf("got output %q, want hello", out)
		}
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 0")
	})

	t.Run("the terminal has the requested size", func(t *testing.T) {
		// Read at once: the size must be there when the process starts
		// (under sandboxed, the shim's runsc wrapper sets it).
		s := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "stty size", "terminalSize": map[string]int{"rows": 30, "cols": 100}})
		out, ce := e.runExec(ctx, t, s, nil)
		done(s)
		if !strings.Contains(out, "30 100") {
			t.Errorf("stty size printed %q, want 30 100", out)
		}
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 0")
	})

	t.Run("a command with quoted arguments runs and reports its exit code", func(t *testing.T) {
		s := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": `sh -c 'echo "a  b"; exit 3'`})
		out, ce := e.runExec(ctx, t, s, nil)
		done(s)
		if !strings.Contains(out, "a  b") {
			t.Errorf("got output %q, want it to contain %q", out, "a  b")
		}
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 3")
	})

	t.Run("an interactive shell is driven over the socket", func(t *testing.T) {
		s := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "/bin/sh"})
		conn := e.dial(ctx, t, s.WebSocketURI, nil)
		defer conn.Close()
		mustWrite(t, conn, websocket.TextMessage, s.Password)
		done(s)
		r := newReader(conn)
		// Keys as a terminal sends them: Enter is a carriage return.
		mustWrite(t, conn, websocket.BinaryMessage, "echo $((6*7))\r")
		if out, err := r.until(ctx, 20*time.Second, func(s string) bool { return strings.Contains(s, "42\r\n") }); err != nil {
			t.Fatalf("no 42 from the shell: %v; output %q", err, out)
		}
		mustWrite(t, conn, websocket.TextMessage, "exit\r")
		out, ce := r.toClose(ctx, 20*time.Second)
		if ce == nil {
			t.Fatalf("socket not closed after exit; output %q", out)
		}
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 0")
	})

	t.Run("closing the socket kills the exec process", func(t *testing.T) {
		s := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "sleep 1000"})
		conn := e.dial(ctx, t, s.WebSocketURI, nil)
		mustWrite(t, conn, websocket.TextMessage, s.Password)
		done(s)
		execID := "berth-exec-" + s.id(t)
		e.waitExec(ctx, t, ctrID, execID, true)
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
		conn.Close()
		e.waitExec(ctx, t, ctrID, execID, false)
	})

	t.Run("a command that does not exist is reported on the socket", func(t *testing.T) {
		s := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "/no/such/thing"})
		out, ce := e.runExec(ctx, t, s, nil)
		done(s)
		if !strings.Contains(out, "/no/such/thing") {
			t.Errorf("got output %q, want an error naming /no/such/thing", out)
		}
		wantClose(t, ce, websocket.CloseInternalServerErr, "/no/such/thing")
	})

	t.Run("a wrong password is refused and uses up the session", func(t *testing.T) {
		s := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "echo never"})
		out, ce := e.runExec(ctx, t, sessionResp{WebSocketURI: s.WebSocketURI, Password: strings.Repeat("x", 32)}, nil)
		wantClose(t, ce, websocket.ClosePolicyViolation, "wrong session password")
		if strings.Contains(out, "never") {
			t.Errorf("the command ran: %q", out)
		}
		_, ce = e.runExec(ctx, t, s, nil)
		wantClose(t, ce, websocket.ClosePolicyViolation, "already used")
	})

	t.Run("a password opens only the session it was issued for", func(t *testing.T) {
		// A session names its container and command; its password is no
		// key to another session, even of the same caller.
		mine := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "echo mine"})
		other := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "echo other"})
		out, ce := e.runExec(ctx, t, sessionResp{WebSocketURI: other.WebSocketURI, Password: mine.Password}, nil)
		wantClose(t, ce, websocket.ClosePolicyViolation, "wrong session password")
		if strings.Contains(out, "other") {
			t.Errorf("another session's password ran its command: %q", out)
		}
		out, ce = e.runExec(ctx, t, mine, nil)
		done(mine)
		if !strings.Contains(out, "mine") {
			t.Errorf("own session: got %q, want mine", out)
		}
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 0")
	})

	t.Run("a password works once", func(t *testing.T) {
		s := e.postSession(ctx, t, name, "ticker", "exec", map[string]any{"command": "echo once"})
		out, ce := e.runExec(ctx, t, s, nil)
		done(s)
		if !strings.Contains(out, "once") {
			t.Errorf("first use: got %q, want once", out)
		}
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 0")
		out, ce = e.runExec(ctx, t, s, nil)
		wantClose(t, ce, websocket.ClosePolicyViolation, "already used")
		if strings.Contains(out, "once") {
			t.Errorf("second use ran the command: %q", out)
		}
	})

	t.Run("attach streams output printed after attaching", func(t *testing.T) {
		for _, how := range []string{"header", "first message"} {
			s := e.postSession(ctx, t, name, "ticker", "attach", nil)
			checkURI(t, s, e.srv.Client.Endpoint, "/attachstream/sessionId/", "", "")
			since := time.Now().Unix()
			var conn *websocket.Conn
			if how == "header" {
				conn = e.dial(ctx, t, s.WebSocketURI, http.Header{"Authorization": {s.Password}})
			} else {
				conn = e.dial(ctx, t, s.WebSocketURI, nil)
				mustWrite(t, conn, websocket.TextMessage, s.Password)
			}
			r := newReader(conn)
			out, err := r.until(ctx, 20*time.Second, func(s string) bool { return strings.Count(s, "tick ") >= 3 })
			conn.Close()
			if err != nil {
				t.Fatalf("attach (%s): want 3 ticks: %v; got %q", how, err, out)
			}
			for _, m := range regexp.MustCompile(`tick (\d+)`).FindAllStringSubmatch(out, -1) {
				if ts, _ := strconv.ParseInt(m[1], 10, 64); ts < since-1 {
					t.Errorf("attach (%s) sent %q, printed before attaching at %d", how, m[0], since)
				}
			}
		}
	})

	t.Run("attach with a wrong password is refused", func(t *testing.T) {
		s := e.postSession(ctx, t, name, "ticker", "attach", nil)
		conn := e.dial(ctx, t, s.WebSocketURI, http.Header{"Authorization": {"nope"}})
		defer conn.Close()
		out, ce := newReader(conn).toClose(ctx, 10*time.Second)
		wantClose(t, ce, websocket.ClosePolicyViolation, "wrong session password")
		if strings.Contains(out, "tick") {
			t.Errorf("refused attach sent output %q", out)
		}
	})

	t.Run("the SDK's ExecuteCommand and Attach get sessions", func(t *testing.T) {
		ex, err := e.containers.ExecuteCommand(ctx, e.rg, name, "ticker", armcontainerinstance.ContainerExecRequest{
			Command:      to.Ptr("echo from-sdk"),
			TerminalSize: &armcontainerinstance.ContainerExecRequestTerminalSize{Rows: to.Ptr[int32](24), Cols: to.Ptr[int32](80)},
		}, nil)
		if err != nil {
			t.Fatalf("ExecuteCommand: %v", err)
		}
		s := sessionResp{WebSocketURI: deref(ex.WebSocketURI), Password: deref(ex.Password)}
		out, ce := e.runExec(ctx, t, s, nil)
		done(s)
		if !strings.Contains(out, "from-sdk") {
			t.Errorf("got %q, want from-sdk", out)
		}
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 0")

		at, err := e.containers.Attach(ctx, e.rg, name, "ticker", nil)
		if err != nil {
			t.Fatalf("Attach: %v", err)
		}
		if !strings.Contains(deref(at.WebSocketURI), "/attachstream/sessionId/") || len(deref(at.Password)) != 32 {
			t.Errorf("Attach returned %q / password of %d characters", deref(at.WebSocketURI), len(deref(at.Password)))
		}
	})

	t.Run("unknown container is refused with 404 ContainerNotFound", func(t *testing.T) {
		for _, kind := range []string{"exec", "attach"} {
			status, code := e.postStatus(ctx, t, name, "nope", kind, map[string]any{"command": "echo"})
			if status != http.StatusNotFound || code != "ContainerNotFound" {
				t.Errorf("%s: got %d %s, want 404 ContainerNotFound", kind, status, code)
			}
		}
	})

	t.Run("a container that does not run is refused with 409 ContainerNotRunning", func(t *testing.T) {
		stopped := "stopped-" + randomHex(t, 3)
		if _, err := e.create(ctx, t, stopped, busyboxGroup(busybox, "once", "Never", []*string{to.Ptr("/bin/true")})); err != nil {
			t.Fatalf("create %s: %v", stopped, err)
		}
		e.waitContainerState(ctx, t, stopped, "Terminated")
		for _, kind := range []string{"exec", "attach"} {
			status, code := e.postStatus(ctx, t, stopped, "once", kind, map[string]any{"command": "echo"})
			if status != http.StatusConflict || code != "ContainerNotRunning" {
				t.Errorf("%s: got %d %s, want 409 ContainerNotRunning", kind, status, code)
			}
		}
	})

	t.Run("an expired password is refused", func(t *testing.T) {
		// DefaultSessionTTL is 60 s.
		if wait := time.Until(expiring.at.Add(61 * time.Second)); wait > 0 {
			t.Logf("waiting %s for the session to expire", wait.Round(time.Second))
			time.Sleep(wait)
		}
		out, ce := e.runExec(ctx, t, expiring, nil)
		wantClose(t, ce, websocket.ClosePolicyViolation, "expired")
		if strings.Contains(out, "late") {
			t.Errorf("expired session ran its command: %q", out)
		}
	})

	t.Run("no exec process is left in containerd", func(t *testing.T) {
		if len(execIDs) == 0 {
			t.Fatal("no exec session ran")
		}
		for _, id := range execIDs {
			e.waitExec(ctx, t, ctrID, id, false)
		}
		nsCtx := namespaces.WithNamespace(ctx, berthNamespace)
		pids, err := e.ctr.TaskService().ListPids(nsCtx, &tasksapi.ListPidsRequest{ContainerID: ctrID})
		if err != nil {
			t.Fatalf("list pids of %s: %v", ctrID, err)
		}
		for _, p := range pids.Processes {
			// The runc shim describes exec processes, and only them.
			if p.Info != nil {
				t.Errorf("process %d of %s is an exec process (%s)", p.Pid, ctrID, p.Info.GetTypeUrl())
			}
		}
	})
}

// sessionResp is the body of an exec or attach POST.
type sessionResp struct {
	WebSocketURI string `json:"webSocketUri"`
	Password     string `json:"password"`
	at           time.Time
}

func (s sessionResp) id(t *testing.T) string {
	u, err := url.Parse(s.WebSocketURI)
	if err != nil {
		t.Fatalf("parse %q: %v", s.WebSocketURI, err)
	}
	return u.Path[strings.LastIndex(u.Path, "/")+1:]
}

func (e *env) sessionPath(name, container, kind string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerInstance/containerGroups/%s/containers/%s/%s?api-version=2023-05-01",
		e.sub, e.rg, name, container, kind)
}

// postSession POSTs exec or attach and fails t unless it answers 200.
func (e *env) postSession(ctx context.Context, t *testing.T, name, container, kind string, body any) sessionResp {
	t.Helper()
	resp, err := e.srv.Do(ctx, http.MethodPost, e.sessionPath(name, container, kind), body)
	if err != nil {
		t.Fatalf("POST %s: %v", kind, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: got %s: %s", kind, resp.Status, b)
	}
	s := sessionResp{at: time.Now()}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("POST %s: decode %s: %v", kind, b, err)
	}
	return s
}

// postStatus POSTs exec or attach and returns the status and error code.
func (e *env) postStatus(ctx context.Context, t *testing.T, name, container, kind string, body any) (int, string) {
	t.Helper()
	resp, err := e.srv.Do(ctx, http.MethodPost, e.sessionPath(name, container, kind), body)
	if err != nil {
		t.Fatalf("POST %s: %v", kind, err)
	}
	defer resp.Body.Close()
	var eb struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	t.Logf("POST %s on %s/%s: %d %s: %s", kind, name, container, resp.StatusCode, eb.Error.Code, eb.Error.Message)
	return resp.StatusCode, eb.Error.Code
}

func checkURI(t *testing.T, s sessionResp, endpoint, pathPrefix, rows, cols string) {
	t.Helper()
	u, err := url.Parse(s.WebSocketURI)
	if err != nil {
		t.Fatalf("webSocketUri %q: %v", s.WebSocketURI, err)
	}
	ep, _ := url.Parse(endpoint)
	if u.Scheme != "wss" || u.Host != ep.Host || !strings.HasPrefix(u.Path, pathPrefix) || len(u.Path) == len(pathPrefix) {
		t.Errorf("got webSocketUri %q, want wss://%s%s<id>", s.WebSocketURI, ep.Host, pathPrefix)
	}
	q := u.Query()
	if q.Get("api-version") != "1.0" || q.Get("rows") != rows || q.Get("cols") != cols {
		t.Errorf("got query %q, want api-version=1.0 rows=%q cols=%q", u.RawQuery, rows, cols)
	}
	if len(s.Password) != 32 {
		t.Errorf("got a password of %d characters, want 32", len(s.Password))
	}
}

// dial opens a websocket to uri, trusting the server's CA.
func (e *env) dial(ctx context.Context, t *testing.T, uri string, h http.Header) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{
		TLSClientConfig:  e.srv.HTTPClient().Transport.(*http.Transport).TLSClientConfig,
		HandshakeTimeout: 10 * time.Second,
	}
	conn, resp, err := d.DialContext(ctx, uri, h)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", uri, err, status)
	}
	return conn
}

// runExec connects, sends the password and then input, and reads until the
// server closes the socket.
func (e *env) runExec(ctx context.Context, t *testing.T, s sessionResp, input []string) (string, *websocket.CloseError) {
	t.Helper()
	conn := e.dial(ctx, t, s.WebSocketURI, nil)
	defer conn.Close()
	mustWrite(t, conn, websocket.TextMessage, s.Password)
	for _, in := range input {
		mustWrite(t, conn, websocket.BinaryMessage, in)
	}
	out, ce := newReader(conn).toClose(ctx, 30*time.Second)
	if ce == nil {
		t.Fatalf("socket not closed by the server; output %q", out)
	}
	return out, ce
}

// execOut runs a shell script in a container through the exec API and
// returns its output and exit code. It reports failures as errors, for
// callers on goroutines of their own; sh is it for a test's goroutine.
func (e *env) execOut(ctx context.Context, group, container, script string) (string, int, error) {
	resp, err := e.srv.Do(ctx, http.MethodPost, e.sessionPath(group, container, "exec"), map[string]any{"command": "/bin/sh -c " + shellQuote(script)})
	if err != nil {
		return "", 0, fmt.Errorf("POST exec: %w", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var s sessionResp
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("POST exec: %s: %s", resp.Status, b)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return "", 0, fmt.Errorf("POST exec: decode %s: %w", b, err)
	}
	d := websocket.Dialer{TLSClientConfig: e.srv.HTTPClient().Transport.(*http.Transport).TLSClientConfig, HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.DialContext(ctx, s.WebSocketURI, nil)
	if err != nil {
		return "", 0, fmt.Errorf("dial %s: %w", s.WebSocketURI, err)
	}
	defer conn.Close()
	if err := conn.WriteMessage(websocket.TextMessage, []byte(s.Password)); err != nil {
		return "", 0, fmt.Errorf("send password: %w", err)
	}
	out, ce := newReader(conn).toClose(ctx, 30*time.Second)
	if ce == nil {
		return out, 0, fmt.Errorf("socket not closed by the server; output %q", out)
	}
	code, err := strconv.Atoi(strings.TrimPrefix(ce.Text, "exit code "))
	if err != nil {
		return out, 0, fmt.Errorf("closed with %d %q, want an exit code; output %q", ce.Code, ce.Text, out)
	}
	return strings.ReplaceAll(out, "\r\n", "\n"), code, nil
}

func mustWrite(t *testing.T, conn *websocket.Conn, typ int, s string) {
	t.Helper()
	if err := conn.WriteMessage(typ, []byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// wsReader collects what a socket receives, in a goroutine.
type wsReader struct {
	msgs chan []byte
	end  chan error
}

func newReader(conn *websocket.Conn) *wsReader {
	r := &wsReader{msgs: make(chan []byte, 1024), end: make(chan error, 1)}
	go func() {
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				r.end <- err
				close(r.msgs)
				return
			}
			r.msgs <- b
		}
	}()
	return r
}

// until reads until ok(all output so far) holds.
func (r *wsReader) until(ctx context.Context, d time.Duration, ok func(string) bool) (string, error) {
	var out strings.Builder
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case b, open := <-r.msgs:
			if !open {
				return out.String(), fmt.Errorf("socket closed: %w", <-r.end)
			}
			out.Write(b)
			if ok(out.String()) {
				return out.String(), nil
			}
		case <-timer.C:
			return out.String(), fmt.Errorf("timed out after %s", d)
		case <-ctx.Done():
			return out.String(), ctx.Err()
		}
	}
}

// toClose reads until the socket closes and returns the output and the
// close frame (nil if the socket ended otherwise or not in time).
func (r *wsReader) toClose(ctx context.Context, d time.Duration) (string, *websocket.CloseError) {
	out, err := r.until(ctx, d, func(string) bool { return false })
	var ce *websocket.CloseError
	for err != nil {
		if errors.As(err, &ce) {
			return out, ce
		}
		err = errors.Unwrap(err)
	}
	return out, nil
}

func wantClose(t *testing.T, ce *websocket.CloseError, code int, reason string) {
	t.Helper()
	if ce == nil {
		t.Errorf("no close frame, want %d %q", code, reason)
		return
	}
	if ce.Code != code || !strings.Contains(ce.Text, reason) {
		t.Errorf("got close %d %q, want %d containing %q", ce.Code, ce.Text, code, reason)
	}
}

// containerID finds the containerd id of a group's container by its labels.
func (e *env) containerID(ctx context.Context, t *testing.T, group, container string) string {
	t.Helper()
	nsCtx := namespaces.WithNamespace(ctx, berthNamespace)
	ctrs, err := e.ctr.ContainerService().List(nsCtx)
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	key := strings.ToLower(e.sub + "/" + e.rg + "/" + group)
	for _, c := range ctrs {
		if c.Labels["io.berth.group"] == key && c.Labels["io.berth.container"] == container {
			return c.ID
		}
	}
	t.Fatalf("no containerd container for %s/%s", group, container)
	return ""
}

// waitExec waits until containerd knows the exec process (present) or no
// longer does.
func (e *env) waitExec(ctx context.Context, t *testing.T, ctrID, execID string, present bool) {
	t.Helper()
	nsCtx := namespaces.WithNamespace(ctx, berthNamespace)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := e.ctr.TaskService().Get(nsCtx, &tasksapi.GetRequest{ContainerID: ctrID, ExecID: execID})
		err = errgrpc.ToNative(err)
		switch {
		case present && err == nil, !present && errdefs.IsNotFound(err):
			return
		case err != nil && !errdefs.IsNotFound(err):
			t.Fatalf("get exec %s of %s: %v", execID, ctrID, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("exec %s of %s: present=%v after 15s, want %v", execID, ctrID, !present, present)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitContainerState polls Get until the first container is in state.
func (e *env) waitContainerState(ctx context.Context, t *testing.T, name, state string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := e.groups.Get(ctx, e.rg, name, nil)
		if err == nil && containerState(resp.ContainerGroup) == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: container not %s after 1m (last error %v)", name, state, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
