package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// dialTimeout bounds one connection attempt. Without it a server whose
// host is gone (no RST, only silence) holds a request for the kernel's SYN
// retries, minutes, before the next endpoint is tried.
const dialTimeout = 10 * time.Second

// Transport is an http.RoundTripper for the endpoints of one cluster: the
// servers serve the same API from the same store, so a request may go to
// any of them. It sends each request to the endpoint that last answered
// and, when no connection to it can be made, to the next one. Only a
// failed dial moves a request on: once a connection exists the request may
// have reached a server, and resending it elsewhere could create or delete
// twice.
type Transport struct {
	base      *http.Transport
	tls       *tls.Config
	endpoints []*url.URL

	mu      sync.Mutex
	current int
}

// NewTransport returns the transport for cfg's endpoints (Endpoint first,
// then Endpoints) that trusts cfg's CA file.
func NewTransport(cfg *Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	eps, err := cfg.endpointURLs()
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &Transport{
		base: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         d.DialContext,
			TLSClientConfig:     tc,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
		},
		tls:       tc,
		endpoints: eps,
	}, nil
}

// TLSConfig is the TLS configuration the transport dials with, for
// connections it does not make itself (websockets).
func (t *Transport) TLSConfig() *tls.Config { return t.tls.Clone() }

// Endpoint is the endpoint requests go to first now: the one that answered
// last.
func (t *Transport) Endpoint() *url.URL {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := *t.endpoints[t.current]
	return &u
}

// Owns reports whether u is on one of the endpoints (scheme and host), the
// only places the token may be sent.
func (t *Transport) Owns(u *url.URL) bool { return t.index(u) >= 0 }

func (t *Transport) index(u *url.URL) int {
	for i, ep := range t.endpoints {
		if strings.EqualFold(u.Scheme, ep.Scheme) && strings.EqualFold(u.Host, ep.Host) {
			return i
		}
	}
	return -1
}

// CloseIdleConnections closes the idle connections of the underlying
// transport, as http.Client.CloseIdleConnections expects.
func (t *Transport) CloseIdleConnections() { t.base.CloseIdleConnections() }

// RoundTrip sends req to the current endpoint, whichever endpoint req's URL
// names (the same path is served by every server), and on to the next
// while connections cannot be made. The endpoint that answers becomes the
// current one. A URL on no endpoint is sent as it is, without failover.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	from := t.index(req.URL)
	if from < 0 {
		return t.base.RoundTrip(req)
	}
	t.mu.Lock()
	start := t.current
	t.mu.Unlock()
	n := len(t.endpoints)
	var errs []error
	for k := range n {
		to := (start + k) % n
		r := req.Clone(req.Context())
		r.URL = moveURL(req.URL, t.endpoints[from], t.endpoints[to])
		r.Host = r.URL.Host
		if k > 0 && req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				// The body was read by the failed attempt's transport and
				// cannot be made again.
				break
			}
			b, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("replay request body: %w", err)
			}
			r.Body = b
		}
		resp, err := t.base.RoundTrip(r)
		if err == nil {
			if to != start {
				t.mu.Lock()
				t.current = to
				t.mu.Unlock()
				slog.Debug("berth endpoint failover", "from", t.endpoints[start].Host, "to", t.endpoints[to].Host)
			}
			return resp, nil
		}
		if n == 1 {
			return nil, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.endpoints[to].Host, err))
		if !isDialError(err) || req.Context().Err() != nil {
			// The request may have reached the server, or the caller
			// gave up: either way it is not sent again.
			return nil, err
		}
	}
	return nil, &NoEndpointError{Errs: errs}
}

// NoEndpointError is the error of a request none of whose endpoints could
// be connected to.
type NoEndpointError struct{ Errs []error }

func (e *NoEndpointError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return "no endpoint could be reached: " + strings.Join(msgs, "; ")
}

func (e *NoEndpointError) Unwrap() []error { return e.Errs }

// isDialError reports whether err is a failure to make the connection
// (refused, unreachable, connect timeout, name not resolved): nothing of the
// request was sent.
func isDialError(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// moveURL returns u, a URL on endpoint from, as the same URL on endpoint to:
// scheme and host replaced, from's path prefix replaced by to's.
func moveURL(u, from, to *url.URL) *url.URL {
	out := *u
	out.Scheme, out.Host = to.Scheme, to.Host
	if from == to {
		return &out
	}
	fromPrefix := strings.TrimRight(from.EscapedPath(), "/")
	toPrefix := strings.TrimRight(to.EscapedPath(), "/")
	if fromPrefix == toPrefix {
		return &out
	}
	esc := u.EscapedPath()
	if rest, ok := strings.CutPrefix(esc, fromPrefix); ok && (rest == "" || rest[0] == '/') {
		esc = toPrefix + rest
	}
	if p, err := url.PathUnescape(esc); err == nil {
		out.Path, out.RawPath = p, ""
		if p != esc {
			out.RawPath = esc
		}
	}
	return &out
}
