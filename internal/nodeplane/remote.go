package nodeplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

// Remote defaults.
const (
	// DefaultRemoteTimeout bounds one request to one server.
	DefaultRemoteTimeout = 10 * time.Second
	// DefaultWatchIdle is three of the API's bookmark intervals: a watch
	// silent that long, bookmarks included, has lost its server.
	DefaultWatchIdle = 30 * time.Second
)

// apiPrefix is where the API serves the node protocol.
const apiPrefix = "/berth/v1/"

// RemoteOptions configure a Remote.
type RemoteOptions struct {
	// Servers are the https base URLs of the control plane's API servers,
	// any of which serves the whole protocol.
	Servers []string
	// Node is the node this agent runs; its client certificate must name it.
	Node string
	// TLS has the CA the servers' certificates are checked against and
	// the node's client certificate.
	TLS    *tls.Config
	Logger *slog.Logger
	// Timeout bounds one request to one server (a watch: until its
	// answer's headers); default DefaultRemoteTimeout.
	Timeout time.Duration
	// WatchIdle is how long a watch may say nothing, not even a
	// bookmark, before it is taken for dead and reconnected; default
	// DefaultWatchIdle.
	WatchIdle time.Duration
}

// Remote is one node's view of the control plane over the API's node
// protocol: the ControlPlane of an agent on another machine. It behaves as
// Local does (the conformance test runs both).
//
// Every request goes to the server that last answered; a server that
// cannot be reached or answers 5xx is skipped for the next one, since
// every call is idempotent. A 4xx is the control plane's answer and is
// returned, classed with errdefs by its status.
type Remote struct {
	servers []string
	node    string
	client  *http.Client
	tr      *http.Transport
	log     *slog.Logger
	timeout time.Duration
	idle    time.Duration
	cur     atomic.Int64 // index of the server that last answered

	closed context.Context
	close  context.CancelFunc
}

// NewRemote returns the node protocol client of o.Node.
func NewRemote(o RemoteOptions) (*Remote, error) {
	if err := validNodeName(o.Node); err != nil {
		return nil, err
	}
	if len(o.Servers) == 0 {
		return nil, fmt.Errorf("node protocol: no server: %w", errdefs.ErrInvalidArgument)
	}
	servers := make([]string, len(o.Servers))
	for i, s := range o.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" {
			return nil, fmt.Errorf("node protocol: server %q: want an https base URL: %w", s, errdefs.ErrInvalidArgument)
		}
		servers[i] = strings.TrimSuffix(u.String(), "/")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultRemoteTimeout
	}
	if o.WatchIdle <= 0 {
		o.WatchIdle = DefaultWatchIdle
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var tc *tls.Config
	if o.TLS != nil {
		tc = o.TLS.Clone()
	}
	// The timeouts are per phase, not per request, so that a watch may
	// stream for hours while a dead server is still noticed quickly.
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: o.Timeout, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		ForceAttemptHTTP2:     true,
		// Streams share an HTTP/2 connection: a dead one is found by
		// pings and closed, so that reconnecting dials anew instead of
		// waiting on it.
		HTTP2:               &http.HTTP2Config{SendPingTimeout: o.Timeout, PingTimeout: o.Timeout},
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 8,
	}
	closed, cancel := context.WithCancel(context.Background())
	return &Remote{
		servers: servers,
		node:    o.Node,
		client:  &http.Client{Transport: tr},
		tr:      tr,
		log:     o.Logger.With("node", o.Node),
		timeout: o.Timeout,
		idle:    o.WatchIdle,
		closed:  closed,
		close:   cancel,
	}, nil
}

// Close ends the Remote's watches and drops its idle connections.
func (r *Remote) Close() {
	r.close()
	r.tr.CloseIdleConnections()
}

// nodePath is the path of one of the node's resources, below apiPrefix.
func (r *Remote) nodePath(parts ...string) string {
	return "nodes/" + url.PathEscape(r.node) + strings.Join(parts, "")
}

// keyPath escapes a group key (sub/rg/name) segment by segment.
func keyPath(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// Register records what the agent says of its node and renews its lease.
func (r *Remote) Register(ctx context.Context, n types.Node) (types.ClusterInfo, error) {
	n.Name = r.node
	var info types.ClusterInfo
	err := r.call(ctx, http.MethodPut, r.nodePath(), nil, n, &info)
	return info, err
}

// RenewLease renews the node's lease.
func (r *Remote) RenewLease(ctx context.Context) error {
	return r.call(ctx, http.MethodPut, r.nodePath("/lease"), nil, nil, nil)
}

// LastStatus returns the group's stored status, nil when it has none.
func (r *Remote) LastStatus(ctx context.Context, key string) (*types.GroupStatus, error) {
	var st *types.GroupStatus
	if err := r.call(ctx, http.MethodGet, r.nodePath("/status/", keyPath(key)), nil, nil, &st); err != nil {
		return nil, err
	}
	return st, nil
}

// ReportStatus reports the group's status; it fails with ErrNotBound
// once the group is no longer this incarnation bound to the node.
func (r *Remote) ReportStatus(ctx context.Context, key string, st *types.GroupStatus) error {
	st.NodeName = r.node
	st.TornDown = false
	return r.call(ctx, http.MethodPut, r.nodePath("/status/", keyPath(key)), nil, st, nil)
}

// ReportTornDown reports that nothing of the deleted group is left on
// the node.
func (r *Remote) ReportTornDown(ctx context.Context, key, uid string) error {
	return r.call(ctx, http.MethodPost, r.nodePath("/torndown/", keyPath(key)), url.Values{"uid": {uid}}, nil, nil)
}

// Assigned is the source of the groups bound to the node.
func (r *Remote) Assigned() controller.Source[types.ContainerGroup] {
	return remoteSource[types.ContainerGroup]{r, r.nodePath("/groups")}
}

// Endpoints is the source of every group's endpoint.
func (r *Remote) Endpoints() controller.Source[types.Endpoint] {
	return remoteSource[types.Endpoint]{r, "endpoints"}
}

// Nodes is the source of every node.
func (r *Remote) Nodes() controller.Source[types.Node] {
	return remoteSource[types.Node]{r, "nodes"}
}

// call sends one request (in as its JSON body when not nil) and decodes
// a 200 answer into out; 204 leaves out as it is.
func (r *Remote) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("node protocol: encode %s %s: %w", method, path, err)
		}
	}
	resp, done, err := r.send(ctx, method, path, q, body, false)
	if err != nil {
		return err
	}
	defer done()
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return errorOf(method, path, resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("node protocol: decode the answer of %s %s: %v: %w", method, path, err, errdefs.ErrUnavailable)
	}
	return nil
}

// send sends the request to the server that last answered, then to the
// others in turn while they cannot be reached or answer 5xx. It returns
// the first other answer, 4xx included; done releases the request. A
// unary request is bounded by r.timeout, a stream only by ctx.
func (r *Remote) send(ctx context.Context, method, path string, q url.Values, body []byte, stream bool) (_ *http.Response, done func(), _ error) {
	start := int(r.cur.Load())
	var last error
	for i := range r.servers {
		idx := (start + i) % len(r.servers)
		server := r.servers[idx]
		u := server + apiPrefix + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		var actx context.Context
		var cancel context.CancelFunc
		if stream {
			actx, cancel = context.WithCancel(ctx)
		} else {
			actx, cancel = context.WithTimeout(ctx, r.timeout)
		}
		req, err := http.NewRequestWithContext(actx, method, u, bytes.NewReader(body))
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("node protocol: %s %s: %v: %w", method, u, err, errdefs.ErrInvalidArgument)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := r.client.Do(req)
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			last = fmt.Errorf("node protocol: %s %s: %v: %w", method, u, err, errdefs.ErrUnavailable)
			r.log.Debug("server unreachable; trying the next", "server", server, "error", err)
			continue
		}
		if resp.StatusCode >= 500 {
			last = errorOf(method, u, resp)
			resp.Body.Close()
			cancel()
			r.log.Debug("server failed; trying the next", "server", server, "status", resp.StatusCode, "error", last)
			continue
		}
		if idx != start {
			r.log.Info("node protocol server changed", "server", server)
		}
		r.cur.Store(int64(idx))
		return resp, cancel, nil
	}
	return nil, nil, last
}

// RemoteError is an error answer of the node protocol: the ARM error body
// and its status, classed with errdefs by the status.
type RemoteError struct {
	Status  int
	Code    string
	Message string
	class   error
}

func (e *RemoteError) Error() string { return e.Code + ": " + e.Message }

// Unwrap is the errdefs class of the status.
func (e *RemoteError) Unwrap() error { return e.class }

// errorOf reads an error answer.
func errorOf(method, path string, resp *http.Response) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := json.Unmarshal(raw, &body); err != nil || body.Error.Message == "" {
		body.Error.Message = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
	}
	if body.Error.Code == "" {
		body.Error.Code = http.StatusText(resp.StatusCode)
	}
	return &RemoteError{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message, class: classOf(resp.StatusCode)}
}

// classOf is the reverse of the API's mapping of errdefs classes to
// statuses (internal/apiserver/errors.go).
func classOf(status int) error {
	switch status {
	case http.StatusBadRequest:
		return errdefs.ErrInvalidArgument
	case http.StatusUnauthorized:
		return errdefs.ErrUnauthenticated
	case http.StatusForbidden:
		return errdefs.ErrPermissionDenied
	case http.StatusNotFound:
		return errdefs.ErrNotFound
	case http.StatusConflict:
		return errdefs.ErrConflict
	case http.StatusPreconditionFailed:
		return errdefs.ErrFailedPrecondition
	case http.StatusTooManyRequests:
		return errdefs.ErrResourceExhausted
	case http.StatusNotImplemented:
		return errdefs.ErrNotImplemented
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return errdefs.ErrUnavailable
	}
	if status >= 500 {
		return errdefs.ErrInternal
	}
	return errdefs.ErrUnknown
}

// remoteSource is a Source of the node protocol at path.
type remoteSource[T any] struct {
	r    *Remote
	path string
}

func (s remoteSource[T]) List(ctx context.Context) ([]controller.Item[T], int64, error) {
	var body struct {
		Items    []controller.Item[T] `json:"items"`
		Revision int64                `json:"revision"`
	}
	if err := s.r.call(ctx, http.MethodGet, s.path, nil, nil, &body); err != nil {
		return nil, 0, err
	}
	return body.Items, body.Revision, nil
}

// Watch streams the changes after afterRev. A stream that breaks or goes
// silent is reconnected, to any server, from the last revision seen, so
// nothing is lost; when no server takes the watch again (or the new
// stream ends before saying anything) the consumer gets EventReset and
// the channel closes: it must list again. Bookmarks are not passed on.
func (s remoteSource[T]) Watch(ctx context.Context, afterRev int64) <-chan controller.Event[T] {
	out := make(chan controller.Event[T])
	go s.watch(ctx, afterRev, out)
	return out
}

func (s remoteSource[T]) watch(ctx context.Context, rev int64, out chan<- controller.Event[T]) {
	defer close(out)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.r.closed, cancel)()
	emit := func(ev controller.Event[T]) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	log := s.r.log.With("watch", s.path)
	for {
		lines, err := s.stream(ctx, &rev, emit)
		if ctx.Err() != nil {
			return
		}
		if lines < 0 {
			return // the server's reset was passed on
		}
		if lines == 0 {
			// Either no server took the watch or the one that did broke
			// it at once: reconnecting again would spin, and a relist
			// converges whatever happened.
			log.Warn("watch lost; the consumer lists again", "revision", rev, "error", err)
			emit(controller.Event[T]{Type: controller.EventReset, Revision: rev})
			return
		}
		log.Debug("watch broke; reconnecting", "revision", rev, "error", err)
	}
}

// stream runs one watch stream from *rev, passing on its events and
// moving *rev past them, until the stream ends, stays silent for r.idle,
// or ctx ends. It returns how many lines came, -1 after a reset.
func (s remoteSource[T]) stream(ctx context.Context, rev *int64, emit func(controller.Event[T]) bool) (int, error) {
	q := url.Values{"watch": {"true"}, "revision": {strconv.FormatInt(*rev, 10)}}
	resp, done, err := s.r.send(ctx, http.MethodGet, s.path, q, nil, true)
	if err != nil {
		return 0, err
	}
	defer done()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, errorOf(http.MethodGet, s.path, resp)
	}
	// A silent stream is ended by cancelling its request: the read
	// below then fails.
	var silent atomic.Bool
	idle := time.AfterFunc(s.r.idle, func() { silent.Store(true); done() })
	defer idle.Stop()
	dec := json.NewDecoder(resp.Body)
	lines := 0
	for {
		var ev controller.Event[T]
		if err := dec.Decode(&ev); err != nil {
			if silent.Load() {
				err = fmt.Errorf("no word from the server for %s: %w", s.r.idle, errdefs.ErrUnavailable)
			}
			return lines, err
		}
		idle.Reset(s.r.idle)
		lines++
		switch ev.Type {
		case controller.EventBookmark:
			*rev = max(*rev, ev.Revision)
		case controller.EventReset:
			emit(ev)
			return -1, nil
		case controller.EventPut, controller.EventDelete:
			if !emit(ev) {
				return lines, ctx.Err()
			}
			*rev = max(*rev, ev.Revision)
		}
		// Events of a type this agent does not know are a newer server's:
		// skipped, as bookmarks are.
	}
}
