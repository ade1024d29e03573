package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/log"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/types"
)

// The node protocol: what agents on other machines call, authenticated by
// the client certificate they got when they joined (nodeplane documents
// the operations). Everything lives under nodeAPIPrefix, apart from ARM.
//
//	PUT  /berth/v1/nodes/{node}                   register (body types.Node) -> types.ClusterInfo
//	PUT  /berth/v1/nodes/{node}/lease             renew the lease
//	GET  /berth/v1/nodes/{node}/groups            the groups bound to the node (list, or ?watch=true&revision=R)
//	GET  /berth/v1/endpoints                      every group's endpoint (list or watch)
//	GET  /berth/v1/nodes                          every node (list or watch; admins too)
//	GET  /berth/v1/nodes/{node}/status/{key...}   the last status of a group bound to the node (204 when none, 412 when not bound)
//	PUT  /berth/v1/nodes/{node}/status/{key...}   report a group's status (412 when no longer bound)
//	POST /berth/v1/nodes/{node}/torndown/{key...}?uid=U  report a deleted group torn down
//
// A list answers {"items": [...], "revision": R}; a watch streams one
// JSON event per line (controller.Event) from after R, with a bookmark
// event every watchBookmark so that both ends see a dead connection.
const nodeAPIPrefix = "/berth/v1/"

// watchBookmark is how often an idle watch says it is alive.
var watchBookmark = 10 * time.Second

// listBody is the answer of a list of the node protocol.
type listBody[T any] struct {
	Items    []controller.Item[T] `json:"items"`
	Revision int64                `json:"revision"`
}

func (s *Server) nodeRoutes() {
	if s.nodes == nil {
		return
	}
	const node = nodeAPIPrefix + "nodes/{node}"
	s.mux.Handle("PUT "+node, s.wrap(s.registerNode))
	s.mux.Handle("PUT "+node+"/lease", s.wrap(s.renewLease))
	s.mux.HandleFunc("GET "+node+"/groups", s.watchAssigned)
	s.mux.HandleFunc("GET "+nodeAPIPrefix+"endpoints", s.watchEndpoints)
	s.mux.HandleFunc("GET "+nodeAPIPrefix+"nodes", s.watchNodes)
	s.mux.Handle("GET "+node+"/status/{key...}", s.wrap(s.lastStatus))
	s.mux.Handle("PUT "+node+"/status/{key...}", s.wrap(s.reportStatus))
	s.mux.Handle("POST "+node+"/torndown/{key...}", s.wrap(s.reportTornDown))
	s.adminRoutes() // cordon, drain, join tokens, joining (nodeadmin.go, join.go)
}

// caller is who sent a request under nodeAPIPrefix: a node by its
// certificate, or an admin by bearer token.
type caller struct {
	node  string
	admin bool
}

type callerKey struct{}

func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(callerKey{}).(caller)
	return c
}

// authenticateNodeAPI finds the caller of a node protocol request: a
// verified client certificate of a node wins over a bearer token, and only
// the admin's token is accepted.
func (s *Server) authenticateNodeAPI(r *http.Request) (*http.Request, *Error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && s.nodeIdentity != nil {
		if name, ok := s.nodeIdentity(r.TLS.VerifiedChains[0][0]); ok {
			return r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{node: name})), nil
		}
	}
	p, err := s.authenticate(r)
	if err != nil {
		return nil, err
	}
	if !p.Admin {
		return nil, armError(http.StatusForbidden, "AuthorizationFailed",
			fmt.Sprintf("The client '%s' may not use the node API: it is for nodes and the admin.", p.Name))
	}
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{admin: true})), nil
}

// requireNode lets a node act only as itself; the admin may act as any.
func requireNode(r *http.Request) (string, error) {
	name := r.PathValue("node")
	if err := nodeplane.ValidNodeName(name); err != nil {
		return "", badRequest("InvalidNodeName", err.Error())
	}
	c := callerOf(r)
	if c.admin || c.node == name {
		return name, nil
	}
	return "", armError(http.StatusForbidden, "AuthorizationFailed",
		fmt.Sprintf("Node '%s' may not act as node '%s'.", c.node, name))
}

func (s *Server) registerNode(r *http.Request) (*response, error) {
	name, err := requireNode(r)
	if err != nil {
		return nil, err
	}
	var n types.Node
	if err := decodeBody(r, &n); err != nil {
		return nil, err
	}
	if n.Name != "" && n.Name != name {
		return nil, badRequest("InvalidNodeName", fmt.Sprintf("The body names node '%s', the path '%s'.", n.Name, name))
	}
	n.Name = name
	info, err := s.nodes.Register(r.Context(), n)
	if err != nil {
		return nil, err
	}
	log.G(r.Context()).Info("node registered", "node", name, "addresses", n.Addresses, "zone", n.Zone)
	return &response{status: http.StatusOK, body: info}, nil
}

func (s *Server) renewLease(r *http.Request) (*response, error) {
	name, err := requireNode(r)
	if err != nil {
		return nil, err
	}
	if err := s.nodes.RenewLease(r.Context(), name); err != nil {
		return nil, err
	}
	return &response{status: http.StatusNoContent}, nil
}

func (s *Server) lastStatus(r *http.Request) (*response, error) {
	name, err := requireNode(r)
	if err != nil {
		return nil, err
	}
	st, err := s.nodes.LastStatus(r.Context(), name, r.PathValue("key"))
	if err != nil {
		return nil, err
	}
	if st == nil {
		return &response{status: http.StatusNoContent}, nil
	}
	return &response{status: http.StatusOK, body: st}, nil
}

func (s *Server) reportStatus(r *http.Request) (*response, error) {
	name, err := requireNode(r)
	if err != nil {
		return nil, err
	}
	var st types.GroupStatus
	if err := decodeBody(r, &st); err != nil {
		return nil, err
	}
	if err := s.nodes.ReportStatus(r.Context(), name, r.PathValue("key"), &st); err != nil {
		return nil, err
	}
	return &response{status: http.StatusNoContent}, nil
}

func (s *Server) reportTornDown(r *http.Request) (*response, error) {
	name, err := requireNode(r)
	if err != nil {
		return nil, err
	}
	if err := s.nodes.ReportTornDown(r.Context(), name, r.PathValue("key"), r.URL.Query().Get("uid")); err != nil {
		return nil, err
	}
	return &response{status: http.StatusNoContent}, nil
}

func (s *Server) watchAssigned(w http.ResponseWriter, r *http.Request) {
	name, err := requireNode(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	serveSource(s, w, r, s.nodes.Assigned(name))
}

// watchEndpoints and watchNodes serve every caller serveNodeAPI let in:
// nodes and the admin.
func (s *Server) watchEndpoints(w http.ResponseWriter, r *http.Request) {
	serveSource(s, w, r, s.nodes.Endpoints())
}

func (s *Server) watchNodes(w http.ResponseWriter, r *http.Request) {
	serveSource(s, w, r, s.nodes.Nodes())
}

// serveSource answers a list, or with ?watch=true streams the source's
// events after ?revision=, one JSON object per line, until the client
// leaves or the source ends the stream (a reset is sent first when the
// history is lost).
func serveSource[T any](s *Server, w http.ResponseWriter, r *http.Request, src controller.Source[T]) {
	ctx := r.Context()
	q := r.URL.Query()
	if q.Get("watch") != "true" {
		items, rev, err := src.List(ctx)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if items == nil {
			items = []controller.Item[T]{}
		}
		writeJSON(w, http.StatusOK, listBody[T]{Items: items, Revision: rev})
		return
	}
	rev, err := strconv.ParseInt(q.Get("revision"), 10, 64)
	if err != nil || rev < 0 {
		s.writeError(w, r, badRequest("InvalidRevision", fmt.Sprintf("The revision '%s' of the watch is not a revision a list returned.", q.Get("revision"))))
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	ch := src.Watch(ctx, rev)
	enc := json.NewEncoder(w)
	tick := time.NewTicker(watchBookmark)
	defer tick.Stop()
	last := rev
	for {
		var ev controller.Event[T]
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			ev = controller.Event[T]{Type: controller.EventBookmark, Revision: last}
		case e, ok := <-ch:
			if !ok {
				return
			}
			ev = e
			last = max(last, e.Revision)
		}
		if err := enc.Encode(ev); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// publicNodeAPIPaths need no caller: joining is how a node gets its
// certificate, and the join token in the body is its credential.
var publicNodeAPIPaths = map[string]bool{nodeAPIPrefix + "join": true, nodeAPIPrefix + "cluster/join": true}

// serveNodeAPI authenticates a node protocol request and dispatches it.
func (s *Server) serveNodeAPI(w http.ResponseWriter, r *http.Request) {
	if !publicNodeAPIPaths[r.URL.Path] {
		ar, err := s.authenticateNodeAPI(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		r = ar
	}
	s.mux.ServeHTTP(w, r)
}

// isNodeAPIPath reports whether p is under the node protocol's prefix.
func isNodeAPIPath(p string) bool { return strings.HasPrefix(strings.ToLower(p), nodeAPIPrefix) }
