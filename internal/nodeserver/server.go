// Package nodeserver serves a node's nodeapi.Service (logs, exec and
// attach of the groups bound to it) to the API servers over HTTPS, the
// kubelet pattern: the node answers only callers whose client certificate
// the cluster CA signed and authorize accepts. internal/nodeclient is the
// API's side. wire.go describes the protocol.
package nodeserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"
	"github.com/gorilla/websocket"

	"github.com/berth-dev/berth/internal/nodeapi"
)

const (
	// writeWait bounds one write to the socket: an API server that stops
	// reading ends its session instead of blocking the process's output.
	writeWait = 10 * time.Second
	// pingEvery and pongWait find an API server that vanished without
	// closing its connection; its session is then stopped.
	pingEvery = 20 * time.Second
	pongWait  = 60 * time.Second
	// closeWait is how long the node waits for the client's close frame
	// after sending its own.
	closeWait = 2 * time.Second
)

// TLSConfig is the node server's TLS: its certificate, and client
// certificates verified against clientCAs when given. A caller without
// one still gets an HTTP answer (401), not a failed handshake.
func TLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    clientCAs,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}
}

// Server is the node server's http.Handler. Serve it with TLSConfig (or
// any config that verifies client certificates); Close ends its streams.
type Server struct {
	svc       nodeapi.Service
	authorize func(*x509.Certificate) bool
	log       *slog.Logger
	mux       *http.ServeMux
	upgrader  websocket.Upgrader

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// New returns the node server of svc. Only a caller whose verified client
// certificate passes authorize gets in: one without a verified
// certificate gets 401, one that authorize refuses 403.
func New(svc nodeapi.Service, authorize func(*x509.Certificate) bool, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		svc:       svc,
		authorize: authorize,
		log:       log,
		mux:       http.NewServeMux(),
		upgrader: websocket.Upgrader{
			ReadBufferSize:  4 << 10,
			WriteBufferSize: 32 << 10,
			// Callers are authenticated by their certificate; they are
			// API servers, not browsers.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	s.upgrader.Error = func(w http.ResponseWriter, r *http.Request, status int, reason error) {
		s.fail(w, r, fmt.Errorf("websocket upgrade: %v: %w", reason, errhttp.ToNative(status)))
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mux.HandleFunc("GET "+PathLogs, s.logs)
	s.mux.HandleFunc("GET "+PathExec, s.exec)
	s.mux.HandleFunc("GET "+PathAttach, s.attach)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, fmt.Errorf("no route for %s %s: %w", r.Method, r.URL.Path, errdefs.ErrNotFound))
	})
	return s
}

// ServeHTTP authenticates the caller by its certificate and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		s.fail(w, r, fmt.Errorf("the node server needs a client certificate of the cluster: %w", errdefs.ErrUnauthenticated))
		return
	}
	cert := r.TLS.VerifiedChains[0][0]
	if !s.authorize(cert) {
		s.fail(w, r, fmt.Errorf("certificate %q may not use the node server: %w", cert.Subject.CommonName, errdefs.ErrPermissionDenied))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Close ends every exec and attach session (their processes are killed
// and removed) and refuses new ones, waiting for them to finish.
// http.Server.Shutdown does not track hijacked connections; call this
// after it.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// fail answers an HTTP request with err: the status of its class and the
// wire Error as JSON.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := errhttp.ToHTTP(err)
	lvl := slog.LevelDebug
	if status >= 500 {
		lvl = slog.LevelError
	}
	s.log.Log(r.Context(), lvl, "node request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error *Error `json:"error"`
	}{WireError(err)})
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	req, err := parseLogRequest(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	content, err := s.svc.ReadLog(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, content)
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	req, err := parseExecRequest(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st := s.open(w, r)
	if st == nil {
		return
	}
	stdinR, stdinW := io.Pipe()
	defer stdinR.Close()
	go st.read(func(b []byte) {
		_, _ = stdinW.Write(b) // fails once the exec is over: the rest is dropped
	}, func(m Message) {
		if m.StdinEOF {
			stdinW.Close()
		}
	}, func() { stdinW.Close() })
	req.Stdin, req.Output = stdinR, st.writer()
	s.log.Info("exec started", "group", req.Group.Key, "container", req.Container, "exec_id", req.ID, "command", req.Args)
	code, err := s.svc.Exec(st.ctx, req)
	stdinR.Close() // unblocks a reader waiting to hand over stdin
	s.log.Info("exec ended", "group", req.Group.Key, "exec_id", req.ID, "exit_code", code, "error", err)
	if err != nil {
		st.finish(Message{Error: WireError(err)})
		return
	}
	st.finish(Message{ExitCode: &code})
}

func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	ref, container, err := parseRef(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st := s.open(w, r)
	if st == nil {
		return
	}
	go st.read(func([]byte) {}, func(Message) {}, func() {})
	s.log.Info("attach started", "group", ref.Key, "container", container)
	err = s.svc.Attach(st.ctx, nodeapi.AttachRequest{Group: ref, Container: container, Output: st.writer()})
	s.log.Info("attach ended", "group", ref.Key, "container", container, "error", err)
	if err != nil {
		st.finish(Message{Error: WireError(err)})
		return
	}
	st.finish(Message{End: true})
}

// stream is one exec or attach session on the node's side: one reader,
// serialised writes, and a context that ends when the client closes or
// goes away, or the server closes.
type stream struct {
	s      *Server
	c      *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	wmu    sync.Mutex
	// done is closed when the read side ended.
	done chan struct{}
}

// open upgrades the request; nil means it was answered with an error.
func (s *Server) open(w http.ResponseWriter, r *http.Request) *stream {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.fail(w, r, fmt.Errorf("the node server is shutting down: %w", errdefs.ErrUnavailable))
		return nil
	}
	s.wg.Add(1)
	s.mu.Unlock()
	c, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.wg.Done() // the upgrader answered
		return nil
	}
	st := &stream{s: s, c: c, done: make(chan struct{})}
	st.ctx, st.cancel = context.WithCancel(s.ctx)
	// The client's close frame is answered once the session is over
	// (finish), not at once: the client waits for that answer to know
	// that the process is gone.
	c.SetCloseHandler(func(int, string) error { return nil })
	go st.ping()
	return st
}

// read passes the client's binary frames to data and its messages to
// control until the client closes or goes away; then it calls end and
// stops the session.
func (st *stream) read(data func([]byte), control func(Message), end func()) {
	defer close(st.done)
	defer st.cancel()
	defer end()
	extend := func() { _ = st.c.SetReadDeadline(time.Now().Add(pongWait)) }
	extend()
	st.c.SetPongHandler(func(string) error { extend(); return nil })
	for {
		typ, b, err := st.c.ReadMessage()
		if err != nil {
			return
		}
		extend()
		switch typ {
		case websocket.BinaryMessage:
			data(b)
		case websocket.TextMessage:
			var m Message
			if json.Unmarshal(b, &m) == nil {
				control(m)
			}
		}
	}
}

// ping keeps the read deadline of a live client from running out.
func (st *stream) ping() {
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	for {
		select {
		case <-st.done:
			return
		case <-st.ctx.Done():
			return
		case <-tick.C:
			if err := st.c.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				return
			}
		}
	}
}

func (st *stream) send(typ int, b []byte) error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	_ = st.c.SetWriteDeadline(time.Now().Add(writeWait))
	return st.c.WriteMessage(typ, b)
}

// writer sends each write as a binary frame.
func (st *stream) writer() io.Writer { return streamWriter{st} }

type streamWriter struct{ st *stream }

func (w streamWriter) Write(p []byte) (int, error) {
	if err := w.st.send(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// finish sends the final message and a close frame, waits a moment for
// the client's, and drops the connection.
func (st *stream) finish(m Message) {
	defer st.s.wg.Done()
	if b, err := json.Marshal(m); err == nil {
		_ = st.send(websocket.TextMessage, b)
	}
	st.wmu.Lock()
	_ = st.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(writeWait))
	st.wmu.Unlock()
	select {
	case <-st.done:
	case <-time.After(closeWait):
	}
	st.cancel()
	_ = st.c.Close()
	<-st.done
}
