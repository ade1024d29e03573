// Package apiserver serves Berth's ARM-compatible REST API: routing, bearer
// authentication, api-version checks, validation, conversion between wire
// models and the internal model, and long-running operations. All state
// lives in the store; the handlers hold none.
package apiserver

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/join"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// Options configure the API server.
type Options struct {
	Store *store.Store
	// Token is the admin bearer token; used when Tokens is nil.
	Token string
	// Tokens maps bearer tokens to principals and their subscriptions.
	Tokens *auth.Tokens
	// NodeServices reaches the node a group is bound to for its logs,
	// exec and attach; without it, those answer 501.
	NodeServices NodeServices
	Logger       *slog.Logger
	// Now returns the current time; tests may fix it.
	Now func() time.Time
	// SessionTTL is how long an exec or attach password stays valid;
	// default DefaultSessionTTL. (issue 4)
	SessionTTL time.Duration
	// TenantID is the installation's tenant; it feeds the hashed DNS names
	// of the reuse scopes. (issue 5)
	TenantID string
	// DNSZone is the zone of the groups' FQDNs, <label>.<region>.<zone>;
	// default DefaultDNSZone. (issue 5)
	DNSZone string
	// PublicSubnet is the node's public bridge subnet; virtual networks
	// may not overlap it. Empty means no check. (issue 5)
	PublicSubnet string
	// ListPageSize is how many groups one page of a list holds before a
	// nextLink; default DefaultListPageSize.
	ListPageSize int
	// Nodes serves the node protocol under /berth/v1/ (nodes.go); nil
	// leaves it out.
	Nodes *nodeplane.Server
	// NodeIdentity names the node a verified client certificate belongs
	// to; ok is false for any other certificate.
	NodeIdentity func(*x509.Certificate) (node string, ok bool)
	// JoinTokens, SignNode and CAPEM let agents join (join.go): the
	// tokens they present, what signs their certificate requests, and
	// the CA they then trust. The admin's token routes need JoinTokens,
	// joining all three.
	JoinTokens *join.Tokens
	SignNode   func(csrDER []byte, node string, ips []net.IP) (certPEM []byte, err error)
	CAPEM      []byte
	// Cluster manages the servers' etcd members and names the leader
	// (cluster.go); nil leaves the cluster routes out. ClusterSecrets,
	// when set, let other servers join: without it (a single member no
	// other server can reach) a join is refused.
	Cluster        Cluster
	ClusterSecrets *ClusterSecrets
	// Snapshot writes a snapshot of the store for the admin's backup
	// (snapshot.go); nil answers the route 501.
	Snapshot func(ctx context.Context, w io.Writer) error
}

// DefaultListPageSize is ListPageSize's default: a list's cost per
// request stays bounded whatever the number of groups.
const DefaultListPageSize = 100

// Server is the API's http.Handler.
type Server struct {
	store    *store.Store
	tokens   *auth.Tokens
	log      *slog.Logger
	now      func() time.Time
	pageSize int
	mux      *http.ServeMux
	groups   store.Typed[types.ContainerGroup]
	status   store.Typed[types.GroupStatus]
	rgs      store.Typed[types.ResourceGroup]
	ops      store.Typed[types.Operation]

	// The node protocol (nodes.go).
	nodes        *nodeplane.Server
	nodeIdentity func(*x509.Certificate) (string, bool)
	joinTokens   *join.Tokens
	signNode     func([]byte, string, []net.IP) ([]byte, error)
	caPEM        []byte

	// The servers (cluster.go).
	cluster        Cluster
	clusterSecrets *ClusterSecrets
	snapshot       func(context.Context, io.Writer) error

	// publicSubnet is Options.PublicSubnet; invalid when unset (issue 5,
	// virtualnetworks.go).
	publicSubnet netip.Prefix

	// DNS name labels (issue 5, dnsnames.go).
	tenantID string
	dnsZone  string
	dnsNames store.Typed[types.DNSName]

	// The groups' nodes, for logs, exec and attach (exec.go).
	nodeSvcs NodeServices

	// Exec and attach sessions (issue 4, stream.go).
	sessions      *sessions
	streamsCtx    context.Context
	streamsCancel context.CancelFunc
	streamsMu     sync.Mutex
	streamsClosed bool
	streamsWG     sync.WaitGroup
}

// New builds the handler tree.
func New(opts Options) *Server {
	s := &Server{
		store:    opts.Store,
		tokens:   opts.Tokens,
		log:      opts.Logger,
		now:      opts.Now,
		pageSize: cmp.Or(opts.ListPageSize, DefaultListPageSize),
		mux:      http.NewServeMux(),
		groups:   store.NewTyped[types.ContainerGroup](opts.Store, types.PrefixGroups),
		status:   store.NewTyped[types.GroupStatus](opts.Store, types.PrefixGroupStatus),
		rgs:      store.NewTyped[types.ResourceGroup](opts.Store, types.PrefixResourceGroups),
		ops:      store.NewTyped[types.Operation](opts.Store, types.PrefixOperations),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.tokens == nil {
		t, err := auth.NewTokens(opts.Token, nil)
		if err != nil {
			panic("apiserver: " + err.Error()) // a programming error: no admin token
		}
		s.tokens = t
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.nodeSvcs = opts.NodeServices
	s.nodes, s.nodeIdentity = opts.Nodes, opts.NodeIdentity
	s.joinTokens, s.signNode, s.caPEM = opts.JoinTokens, opts.SignNode, opts.CAPEM
	s.cluster, s.clusterSecrets = opts.Cluster, opts.ClusterSecrets
	s.snapshot = opts.Snapshot
	s.publicSubnet, _ = netip.ParsePrefix(opts.PublicSubnet)
	s.tenantID, s.dnsZone = opts.TenantID, strings.ToLower(strings.Trim(opts.DNSZone, "."))
	if s.dnsZone == "" {
		s.dnsZone = DefaultDNSZone
	}
	s.dnsNames = store.NewTyped[types.DNSName](opts.Store, types.PrefixDNSNames)
	s.sessions = newSessions(opts.SessionTTL, s.now)
	s.streamsCtx, s.streamsCancel = context.WithCancel(context.Background())
	s.routes()
	return s
}

func (s *Server) routes() {
	const rg = "/subscriptions/{sub}/resourcegroups/{rg}"
	const cg = rg + "/providers/microsoft.containerinstance/containergroups/{name}"

	s.mux.Handle("GET /subscriptions/{sub}/resourcegroups", s.wrap(s.listResourceGroups))
	s.mux.Handle("PUT "+rg, s.wrap(s.putResourceGroup))
	s.mux.Handle("GET "+rg, s.wrap(s.getResourceGroup))
	s.mux.Handle("DELETE "+rg, s.wrap(s.deleteResourceGroup))
	s.networkRoutes(rg) // Microsoft.Network virtual networks (issue 5)

	aci := s.requireAPIVersion
	s.mux.Handle("GET /subscriptions/{sub}/providers/microsoft.containerinstance/containergroups", aci(s.wrap(s.listGroupsBySubscription)))
	s.mux.Handle("GET "+rg+"/providers/microsoft.containerinstance/containergroups", aci(s.wrap(s.listGroupsByResourceGroup)))
	s.mux.Handle("PUT "+cg, aci(s.wrap(s.putGroup)))
	s.mux.Handle("GET "+cg, aci(s.wrap(s.getGroup)))
	s.mux.Handle("DELETE "+cg, aci(s.wrap(s.deleteGroup)))
	s.mux.Handle("PATCH "+cg, aci(s.wrap(s.patchGroup)))
	s.mux.Handle("POST "+cg+"/stop", aci(s.wrap(s.stopGroup)))
	s.mux.Handle("POST "+cg+"/start", aci(s.wrap(s.startGroup)))
	s.mux.Handle("POST "+cg+"/restart", aci(s.wrap(s.restartGroup)))
	s.mux.Handle("GET "+cg+"/outboundnetworkdependenciesendpoints", aci(s.wrap(s.outboundDependencies)))
	s.mux.Handle("GET "+cg+"/containers/{container}/logs", aci(s.wrap(s.containerLogs)))
	// Exec and attach (issue 4): the POSTs hand out sessions, the streams
	// serve them over websocket and authenticate by session password.
	s.mux.Handle("POST "+cg+"/containers/{container}/exec", aci(s.wrap(s.execContainer)))
	s.mux.Handle("POST "+cg+"/containers/{container}/attach", aci(s.wrap(s.attachContainer)))
	s.mux.HandleFunc("GET "+execStreamPrefix+"{id}", s.execStream)
	s.mux.HandleFunc("GET "+attachStreamPrefix+"{id}", s.attachStream)
	// The operation-status URL is handed out by Berth itself with its own
	// api-version (2018-06-01, as the real service does), so any is fine.
	s.mux.Handle("GET /subscriptions/{sub}/providers/microsoft.containerinstance/locations/{location}/operations/{id}", s.wrap(s.getOperation))
	s.nodeRoutes() // the node protocol, for agents (nodes.go)

	s.mux.Handle("/", s.wrap(func(r *http.Request) (*response, error) {
		return nil, armError(http.StatusNotFound, "NotFound", "No route matches "+r.Method+" "+r.URL.Path+".")
	}))
}

// ServeHTTP authenticates the caller, normalises the path and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := uuid.NewString()
	w.Header().Set("x-ms-request-id", reqID)
	if cid := r.Header.Get("x-ms-correlation-request-id"); cid != "" {
		w.Header().Set("x-ms-correlation-request-id", cid)
	}
	// The node protocol has callers of its own (nodes and the admin) and
	// paths that are not ARM's: it is neither normalised nor authorised
	// by subscription.
	if isNodeAPIPath(r.URL.Path) {
		s.serveNodeAPI(w, r)
		return
	}
	// The exec/attach websockets authenticate by session password
	// (issue 4, stream.go).
	stream := isStreamPath(r.URL.Path)
	var p *auth.Principal
	if !stream {
		var err *Error
		if p, err = s.authenticate(r); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	r.URL.Path = normalizePath(r.URL.Path)
	r.URL.RawPath = ""
	if !stream {
		if err := authorize(p, r); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authenticate(r *http.Request) (*auth.Principal, *Error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, armError(http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return nil, armError(http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid.")
	}
	p, ok := s.tokens.Authenticate(tok)
	if !ok {
		return nil, armError(http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid.")
	}
	return p, nil
}

// authorize lets a principal act only within its subscriptions. Everything
// under /subscriptions/{sub} is checked here, once, before any route runs:
// the answer for a foreign subscription is the same 403 whether or not the
// resource exists, so nothing leaks about another tenant's resources (ARM
// answers AuthorizationFailed the same way).
func authorize(p *auth.Principal, r *http.Request) *Error {
	rest, ok := strings.CutPrefix(r.URL.Path, "/subscriptions/")
	if !ok {
		return nil
	}
	sub, _, _ := strings.Cut(rest, "/")
	if p.CanAccess(sub) {
		return nil
	}
	return armError(http.StatusForbidden, "AuthorizationFailed", fmt.Sprintf(
		"The client '%s' does not have authorization to perform action '%s' over scope '/subscriptions/%s' or the scope is invalid.",
		p.Name, r.Method+" "+r.URL.Path, sub))
}

// normalizePath makes ARM's fixed path segments case-insensitive and drops
// empty segments (az's --file path sends "Microsoft.ContainerInstance//containerGroups").
// ARM paths alternate keyword/value, so even positions are keywords; the
// value after "providers" is a namespace, also matched without case.
func normalizePath(p string) string {
	var segs []string
	for seg := range strings.SplitSeq(p, "/") {
		if seg != "" {
			segs = append(segs, seg)
		}
	}
	for i := range segs {
		if i%2 == 0 || (i > 0 && segs[i-1] == "providers") {
			segs[i] = strings.ToLower(segs[i])
		}
	}
	return "/" + strings.Join(segs, "/")
}

// requireAPIVersion refuses container-instance requests without the one
// api-version this server speaks.
func (s *Server) requireAPIVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query().Get("api-version")
		switch v {
		case armv1.APIVersion:
			next.ServeHTTP(w, r)
		case "":
			s.writeError(w, r, badRequest("MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests."))
		default:
			s.writeError(w, r, badRequest("InvalidApiVersionParameter",
				"The api-version '"+v+"' is invalid. The supported versions are '"+armv1.APIVersion+"'."))
		}
	})
}

// response is what a handler returns on success.
type response struct {
	status int
	body   any
	header http.Header
}

type handlerFunc func(r *http.Request) (*response, error)

// wrap turns a handler into an http.Handler: it writes the JSON body, maps
// errors to ARM errors and logs the request once.
func (s *Server) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := h(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for k, vs := range resp.header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", resp.status)
		writeJSON(w, resp.status, resp.body)
	})
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toARM(err)
	lvl := slog.LevelDebug
	if ae.Status >= 500 {
		lvl = slog.LevelError
	}
	s.log.Log(r.Context(), lvl, "request failed", "method", r.Method, "path", r.URL.Path,
		"status", ae.Status, "code", ae.Code, "err", err)
	w.Header().Set("x-ms-error-code", ae.Code)
	writeJSON(w, ae.Status, armv1.ErrorResponse{Error: armv1.ErrorBody{Code: ae.Code, Message: ae.Message, Target: ae.Target}})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	if body == nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// decodeBody reads a JSON request body into v, refusing malformed JSON
// with a clear ARM error before anything is stored.
func decodeBody(r *http.Request, v any) error {
	const limit = 4 << 20
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	if err := dec.Decode(v); err != nil {
		return badRequest("InvalidRequestContent", "The request content was invalid and could not be deserialized: "+err.Error())
	}
	if dec.More() {
		return badRequest("InvalidRequestContent", "The request content was invalid: unexpected data after the JSON object.")
	}
	return nil
}
