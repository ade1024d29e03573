// Package nodeclient is the API server's side of the node servers
// (internal/nodeserver): Client is a remote node's nodeapi.Service over
// mutually authenticated HTTPS, and Dialer finds the service of any node
// by name, in process for the server's own agent.
package nodeclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/gorilla/websocket"

	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/nodeserver"
)

const (
	dialTimeout = 10 * time.Second
	// headerTimeout bounds the wait for a logs answer's headers.
	headerTimeout = 30 * time.Second
	writeWait     = 10 * time.Second
	// idleWait is how long a stream may stay silent (the node pings every
	// 20 s) before the node counts as lost.
	idleWait = 60 * time.Second
	// stopWait is how long a stopped session waits for the node to say
	// it is over: the kill and removal of an exec process take a moment.
	stopWait = 45 * time.Second
	// maxErrorBody is the most of an error answer that is read.
	maxErrorBody = 64 << 10
)

// Client is the nodeapi.Service of one remote node.
type Client struct {
	endpoint string // https://host:port
	node     string // for messages; the endpoint when unnamed
	http     *http.Client
	ws       *websocket.Dialer
}

var _ nodeapi.Service = (*Client)(nil)

// New returns the client of the node server at endpoint
// (https://host:port). tlsConf holds the API server's client certificate
// and the CA the node's certificate is checked against.
func New(endpoint string, tlsConf *tls.Config) *Client {
	endpoint = strings.TrimSuffix(endpoint, "/")
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &Client{
		endpoint: endpoint,
		node:     endpoint,
		http: &http.Client{Transport: &http.Transport{
			DialContext:           d.DialContext,
			TLSClientConfig:       tlsConf,
			TLSHandshakeTimeout:   dialTimeout,
			ResponseHeaderTimeout: headerTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
		}},
		ws: &websocket.Dialer{
			NetDialContext:   d.DialContext,
			TLSClientConfig:  tlsConf,
			HandshakeTimeout: dialTimeout,
			ReadBufferSize:   32 << 10,
			WriteBufferSize:  4 << 10,
		},
	}
}

// Close drops the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// unavailable is the error of a node that cannot be reached.
func (c *Client) unavailable(err error) error {
	return fmt.Errorf("node %s cannot be reached: %v: %w", c.node, err, errdefs.ErrUnavailable)
}

func (c *Client) url(scheme, path string, q url.Values) (string, error) {
	rest, ok := strings.CutPrefix(c.endpoint, "https://")
	if !ok {
		return "", fmt.Errorf("node %s: endpoint %q is not an https URL: %w", c.node, c.endpoint, errdefs.ErrInvalidArgument)
	}
	return scheme + "://" + rest + path + "?" + q.Encode(), nil
}

func (c *Client) ReadLog(ctx context.Context, req nodeapi.LogRequest) (string, error) {
	u, err := c.url("https", nodeserver.PathLogs, nodeserver.LogQuery(req))
	if err != nil {
		return "", err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", c.unavailable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return "", nodeserver.StatusError(resp.StatusCode, b)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", c.unavailable(err)
	}
	return string(b), nil
}

// Exec runs the command on the node. Stdin is read until it ends or the
// session does; Exec does not wait for a Read that blocks, nor close it.
func (c *Client) Exec(ctx context.Context, req nodeapi.ExecRequest) (uint32, error) {
	s, err := c.open(ctx, nodeserver.PathExec, nodeserver.ExecQuery(req))
	if err != nil {
		return 0, err
	}
	if req.Stdin != nil {
		go s.pumpStdin(req.Stdin)
	}
	m, err := s.run(ctx, req.Output)
	if err != nil {
		return 0, err
	}
	if m.ExitCode == nil {
		return 0, fmt.Errorf("node %s ended the exec without an exit code: %w", c.node, errdefs.ErrUnavailable)
	}
	return *m.ExitCode, nil
}

// Attach streams the container's output until ctx ends, the output ends
// or req.Output fails; the three return nil.
func (c *Client) Attach(ctx context.Context, req nodeapi.AttachRequest) error {
	s, err := c.open(ctx, nodeserver.PathAttach, nodeserver.Query(req.Group, req.Container))
	if err != nil {
		return err
	}
	_, err = s.run(ctx, req.Output)
	if errors.Is(err, errStopped) || errors.Is(err, errOutput) {
		return nil
	}
	return err
}

// open dials a stream. An answer before the upgrade is the node's error.
func (c *Client) open(ctx context.Context, path string, q url.Values) (*session, error) {
	u, err := c.url("wss", path, q)
	if err != nil {
		return nil, err
	}
	conn, resp, err := c.ws.DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
			return nil, nodeserver.StatusError(resp.StatusCode, b)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.unavailable(err)
	}
	return &session{c: c, conn: conn}, nil
}

// session is one stream on the API's side.
type session struct {
	c    *Client
	conn *websocket.Conn
	wmu  sync.Mutex
}

var (
	// errStopped: the session was stopped by its context.
	errStopped = errors.New("session stopped")
	// errOutput: the output could not be written.
	errOutput = errors.New("output failed")
)

func (s *session) send(typ int, b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeWait))
	return s.conn.WriteMessage(typ, b)
}

// stop asks the node to end the session.
func (s *session) stop() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(writeWait))
}

func (s *session) pumpStdin(r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if s.send(websocket.BinaryMessage, buf[:n]) != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			b, _ := json.Marshal(nodeserver.Message{StdinEOF: true})
			_ = s.send(websocket.TextMessage, b)
			return
		}
		if err != nil {
			return
		}
	}
}

type outcome struct {
	m   *nodeserver.Message
	err error
}

// run copies the node's output to out until the node's final message and
// returns it; an error message becomes its error. When ctx ends, or out
// fails, it stops the session and waits for the node to end it:
// errStopped (wrapping ctx's error) or errOutput.
func (s *session) run(ctx context.Context, out io.Writer) (*nodeserver.Message, error) {
	defer s.conn.Close()
	outFailed := make(chan error, 1)
	res := make(chan outcome, 1)
	go func() { res <- s.read(out, outFailed) }()

	var stopped error
	select {
	case o := <-res:
		return o.m, o.err
	case <-ctx.Done():
		stopped = fmt.Errorf("%w: %w", errStopped, ctx.Err())
	case err := <-outFailed:
		stopped = fmt.Errorf("%w: %w", errOutput, err)
	}
	s.stop()
	timer := time.NewTimer(stopWait)
	defer timer.Stop()
	select {
	case o := <-res:
		// The node's verdict on a session it was asked to stop: the
		// stop is what ended it, unless the node reports another error.
		if o.m != nil && o.err != nil && !errdefs.IsCanceled(o.err) {
			return nil, o.err
		}
	case <-timer.C:
	}
	return nil, stopped
}

// read reads frames until the node's final message or the connection's
// end. A failed write to out is reported once on outFailed; the rest of
// the output is dropped while the session winds down.
func (s *session) read(out io.Writer, outFailed chan<- error) outcome {
	extend := func() { _ = s.conn.SetReadDeadline(time.Now().Add(idleWait)) }
	extend()
	s.conn.SetPingHandler(func(data string) error {
		extend()
		err := s.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeWait))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	failed := false
	for {
		typ, b, err := s.conn.ReadMessage()
		if err != nil {
			return outcome{err: fmt.Errorf("node %s: the session's connection ended early: %v: %w", s.c.node, err, errdefs.ErrUnavailable)}
		}
		extend()
		switch typ {
		case websocket.BinaryMessage:
			if failed || out == nil {
				continue
			}
			if _, err := out.Write(b); err != nil {
				failed = true
				outFailed <- err
			}
		case websocket.TextMessage:
			var m nodeserver.Message
			if err := json.Unmarshal(b, &m); err != nil || !m.Final() {
				continue
			}
			if m.Error != nil {
				return outcome{m: &m, err: m.Error.Err()}
			}
			return outcome{m: &m}
		}
	}
}
