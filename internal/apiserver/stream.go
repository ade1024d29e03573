package apiserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/gorilla/websocket"

	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/types"
)

// The websocket endpoints, as ACI names them. They take no bearer token:
// the session password is their authentication.
const (
	execStreamPrefix   = "/execstream/sessionId/"
	attachStreamPrefix = "/attachstream/sessionId/"
)

const (
	// passwordWait is how long a client has to send the password after
	// connecting.
	passwordWait = 30 * time.Second
	// writeWait bounds one write to the socket: a client that stops
	// reading ends its session instead of blocking the process's output.
	writeWait = 10 * time.Second
	// closeWait is how long the server waits for the client's close frame
	// after sending its own.
	closeWait = 2 * time.Second
	// maxCloseReason is the most text a close frame holds (125 bytes less
	// the 2-byte code).
	maxCloseReason = 123
)

// isStreamPath tells the websocket endpoints, which skip bearer auth.
func isStreamPath(p string) bool {
	return strings.HasPrefix(p, execStreamPrefix) || strings.HasPrefix(p, attachStreamPrefix)
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4 << 10,
	WriteBufferSize: 32 << 10,
	// The password, not the origin, authenticates; non-browser clients
	// (az, the Berth CLI) send whatever origin they like.
	CheckOrigin: func(*http.Request) bool { return true },
}

// execStream serves an exec session: the first message is the password,
// then stdin frames (text or binary) go to the process's terminal and its
// output comes back as binary frames until it exits.
func (s *Server) execStream(w http.ResponseWriter, r *http.Request) {
	ws, ctx, done := s.openStream(w, r)
	if ws == nil {
		return
	}
	defer done()
	pw, ok := ws.firstMessage(ctx)
	if !ok {
		return
	}
	sess, g, ok := s.openSession(ctx, ws, r.PathValue("id"), sessionExec, pw)
	if !ok {
		return
	}

	node, ref, err := s.nodeService(ctx, g)
	if err != nil {
		ws.fail(err)
		return
	}
	stdinR, stdinW := io.Pipe()
	defer stdinR.Close()
	go func() {
		defer stdinW.Close()
		for b := range ws.in {
			if _, err := stdinW.Write(b); err != nil {
				return
			}
		}
	}()
	s.log.Info("exec session started", "group", g.Key(), "container", sess.Container, "session", sess.ID, "command", sess.Command)
	code, err := node.Exec(ctx, nodeapi.ExecRequest{
		Group:     ref,
		Container: sess.Container,
		ID:        "berth-exec-" + sess.ID,
		Args:      sess.Command,
		Rows:      sess.Rows,
		Cols:      sess.Cols,
		Stdin:     stdinR,
		Output:    ws.writer(),
	})
	s.log.Info("exec session ended", "session", sess.ID, "exit_code", code, "err", err)
	switch {
	case ctx.Err() != nil:
		ws.close(websocket.CloseGoingAway, "session ended")
	case err != nil:
		ws.fail(err)
	default:
		ws.close(websocket.CloseNormalClosure, fmt.Sprintf("exit code %d", code))
	}
}

// attachStream serves an attach session: the password comes in the
// Authorization header of the upgrade request (as ACI documents), or else
// as the first message; then the container's output flows as binary frames
// until the client closes. What the client sends is ignored.
func (s *Server) attachStream(w http.ResponseWriter, r *http.Request) {
	pw := strings.TrimSpace(r.Header.Get("Authorization"))
	pw = strings.TrimPrefix(pw, "Bearer ")
	ws, ctx, done := s.openStream(w, r)
	if ws == nil {
		return
	}
	defer done()
	if pw == "" {
		var ok bool
		if pw, ok = ws.firstMessage(ctx); !ok {
			return
		}
	}
	sess, g, ok := s.openSession(ctx, ws, r.PathValue("id"), sessionAttach, pw)
	if !ok {
		return
	}
	node, ref, err := s.nodeService(ctx, g)
	if err != nil {
		ws.fail(err)
		return
	}
	go func() {
		for range ws.in {
		}
	}()
	s.log.Info("attach session started", "group", g.Key(), "container", sess.Container, "session", sess.ID)
	err = node.Attach(ctx, nodeapi.AttachRequest{Group: ref, Container: sess.Container, Output: ws.writer()})
	s.log.Info("attach session ended", "session", sess.ID, "err", err)
	switch {
	case ctx.Err() != nil:
		ws.close(websocket.CloseGoingAway, "session ended")
	case err != nil:
		ws.fail(err)
	default:
		ws.close(websocket.CloseNormalClosure, "the container's output ended")
	}
}

// openStream upgrades the connection and returns it with a context that
// ends when the client goes away or the server closes its streams; done
// releases both. A failed upgrade has been answered and returns nil.
func (s *Server) openStream(w http.ResponseWriter, r *http.Request) (*wsConn, context.Context, func()) {
	s.streamsMu.Lock()
	if s.streamsClosed {
		s.streamsMu.Unlock()
		s.writeError(w, r, armError(http.StatusServiceUnavailable, "ServiceUnavailable", "The server is shutting down."))
		return nil, nil, nil
	}
	s.streamsWG.Add(1)
	s.streamsMu.Unlock()

	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		// Upgrade answered the request with an HTTP error.
		s.log.Debug("websocket upgrade failed", "path", r.URL.Path, "err", err)
		s.streamsWG.Done()
		return nil, nil, nil
	}
	ws := newWSConn(conn)
	ctx, cancel := context.WithCancel(s.streamsCtx)
	go func() {
		select {
		case <-ws.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ws, ctx, func() {
		cancel()
		ws.shutdown()
		s.streamsWG.Done()
	}
}

// openSession uses up the session and loads its group; on failure it has
// closed the socket with the reason.
func (s *Server) openSession(ctx context.Context, ws *wsConn, id, kind, password string) (session, *types.ContainerGroup, bool) {
	sess, err := s.sessions.take(id, kind, password)
	if err != nil {
		s.log.Info("websocket session refused", "session", id, "kind", kind, "reason", err)
		ws.close(websocket.ClosePolicyViolation, err.Error())
		return session{}, nil, false
	}
	g, _, err := s.groups.Get(ctx, sess.GroupKey)
	switch {
	case errdefs.IsNotFound(err) || (err == nil && g.UID != sess.GroupUID):
		err = fmt.Errorf("the container group of this session was deleted: %w", errdefs.ErrNotFound)
	case err == nil && g.Deleting:
		err = fmt.Errorf("the container group of this session is being deleted: %w", errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		ws.fail(err)
		return session{}, nil, false
	}
	return sess, &g, true
}

// CloseStreams ends every exec and attach session (their processes are
// killed and removed) and refuses new ones, waiting for them to finish.
// http.Server.Shutdown does not track hijacked connections; call this
// after it.
func (s *Server) CloseStreams() {
	s.streamsMu.Lock()
	s.streamsClosed = true
	s.streamsMu.Unlock()
	s.streamsCancel()
	s.streamsWG.Wait()
}

// wsConn is a server-side websocket: one goroutine reads, writes are
// serialised.
type wsConn struct {
	c   *websocket.Conn
	wmu sync.Mutex
	// in yields the client's data messages; it is closed when the read
	// side ends (close frame or error), as is done.
	in   chan []byte
	done chan struct{}
	// quit tells the reader that no one takes messages any more.
	quit     chan struct{}
	quitOnce sync.Once
}

func newWSConn(c *websocket.Conn) *wsConn {
	ws := &wsConn{c: c, in: make(chan []byte, 16), done: make(chan struct{}), quit: make(chan struct{})}
	go ws.read()
	return ws
}

func (ws *wsConn) read() {
	defer close(ws.done)
	defer close(ws.in)
	for {
		_, b, err := ws.c.ReadMessage()
		if err != nil {
			return
		}
		select {
		case ws.in <- b:
		case <-ws.quit:
			// Discard until the client's close frame arrives.
		}
	}
}

// firstMessage waits for the client's first data message, the password.
func (ws *wsConn) firstMessage(ctx context.Context) (string, bool) {
	timer := time.NewTimer(passwordWait)
	defer timer.Stop()
	select {
	case b, ok := <-ws.in:
		return string(b), ok
	case <-timer.C:
		ws.close(websocket.ClosePolicyViolation, "no password received")
	case <-ctx.Done():
		ws.close(websocket.CloseGoingAway, "server shutting down")
	}
	return "", false
}

// writer returns an io.Writer that sends each write as a binary frame.
func (ws *wsConn) writer() *wsWriter { return &wsWriter{ws} }

type wsWriter struct{ ws *wsConn }

func (w *wsWriter) Write(p []byte) (int, error) {
	if err := w.ws.send(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) send(typ int, p []byte) error {
	ws.wmu.Lock()
	defer ws.wmu.Unlock()
	_ = ws.c.SetWriteDeadline(time.Now().Add(writeWait))
	return ws.c.WriteMessage(typ, p)
}

// fail sends err's text as a message, for clients that only print what
// they receive, and closes with 1011 and the same text.
func (ws *wsConn) fail(err error) {
	msg := err.Error()
	_ = ws.send(websocket.TextMessage, []byte("berth: "+msg+"\r\n"))
	ws.close(websocket.CloseInternalServerErr, msg)
}

// close sends a close frame and waits a moment for the client's.
func (ws *wsConn) close(code int, reason string) {
	if len(reason) > maxCloseReason {
		reason = strings.ToValidUTF8(reason[:maxCloseReason], "")
	}
	ws.quitOnce.Do(func() { close(ws.quit) })
	_ = ws.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(writeWait))
	select {
	case <-ws.done:
	case <-time.After(closeWait):
	}
}

// shutdown drops the connection.
func (ws *wsConn) shutdown() {
	ws.quitOnce.Do(func() { close(ws.quit) })
	_ = ws.c.Close()
	<-ws.done
}
