package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/join"
	"github.com/berth-dev/berth/internal/log"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// The servers of a cluster, for the admin and for servers that join:
//
//	GET    /berth/v1/cluster                        members, leader, servers (admin)
//	POST   /berth/v1/cluster/join                   a new server's token -> the cluster's CA, key, admin token, initial members (public)
//	POST   /berth/v1/cluster/members/{name}/promote make the joined learner a voter; 503 until it caught up (admin)
//	DELETE /berth/v1/cluster/members/{name}         remove a server's member: 200 removed, 204 none (admin)
//
// A joining server gets everything another server has: the CA's key (to
// sign nodes) and the admin token. Only a token of the server role lets
// it, and the answer goes over TLS the joining server verified with the
// CA it was given.

// Cluster is what the cluster routes need of the servers' etcd cluster
// and election.
type Cluster interface {
	Members(ctx context.Context) ([]ClusterMember, error)
	// AddLearner adds a non-voting member for server name on peerURL and
	// returns the initial cluster it starts with.
	AddLearner(ctx context.Context, name, peerURL string) (initialCluster string, err error)
	// Promote makes name's learner a voter; errdefs.ErrUnavailable until
	// it has caught up.
	Promote(ctx context.Context, name string) error
	Remove(ctx context.Context, name string) error
	// Leader is the server that runs the controllers now.
	Leader(ctx context.Context) (name string, electedAt time.Time, err error)
}

// ClusterMember is one etcd member of the servers.
type ClusterMember struct {
	Name     string   `json:"name"`
	ID       string   `json:"id"`
	PeerURLs []string `json:"peerURLs"`
	// Learner: joined, not voting yet.
	Learner bool `json:"learner"`
	// RaftLeader is the member etcd's writes go through; not necessarily
	// the leader of the controllers.
	RaftLeader bool `json:"raftLeader"`
}

// ClusterSecrets is what a joining server receives.
type ClusterSecrets struct {
	CAKeyPEM   []byte
	AdminToken string
}

// clusterView is the answer of GET /berth/v1/cluster.
type clusterView struct {
	Leader    string          `json:"leader,omitempty"`
	ElectedAt time.Time       `json:"electedAt,omitzero"`
	Members   []ClusterMember `json:"members"`
	Servers   []types.Server  `json:"servers"`
}

// ServerJoinRequest is what `berth server --join` sends.
type ServerJoinRequest struct {
	Token string `json:"token"`
	Name  string `json:"name"`
	// PeerURL is where the new member listens for the others:
	// https://HOST:PORT.
	PeerURL string `json:"peerURL"`
}

// ServerJoinResponse is what a joined server needs to start its member.
type ServerJoinResponse struct {
	CA             string `json:"ca"`
	CAKey          string `json:"caKey"`
	AdminToken     string `json:"adminToken"`
	InitialCluster string `json:"initialCluster"`
}

func (s *Server) clusterRoutes() {
	if s.cluster == nil {
		return
	}
	const prefix = nodeAPIPrefix + "cluster"
	s.mux.Handle("GET "+prefix, s.wrap(adminOnly(s.showCluster)))
	s.mux.Handle("POST "+prefix+"/members/{name}/promote", s.wrap(adminOnly(s.promoteMember)))
	s.mux.Handle("DELETE "+prefix+"/members/{name}", s.wrap(adminOnly(s.removeMember)))
	if s.joinTokens != nil {
		s.mux.Handle("POST "+prefix+"/join", s.wrap(s.joinServer))
	}
}

func (s *Server) storeServers() store.Typed[types.Server] {
	return store.NewTyped[types.Server](s.store, types.PrefixServers)
}

func (s *Server) showCluster(r *http.Request) (*response, error) {
	members, err := s.cluster.Members(r.Context())
	if err != nil {
		return nil, err
	}
	v := clusterView{Members: members, Servers: []types.Server{}}
	if name, at, err := s.cluster.Leader(r.Context()); err == nil {
		v.Leader, v.ElectedAt = name, at
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	items, _, err := s.storeServers().List(r.Context())
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		v.Servers = append(v.Servers, it.Value)
	}
	return &response{status: http.StatusOK, body: v}, nil
}

func validServerName(name string) *Error {
	if err := nodeplane.ValidNodeName(name); err != nil {
		return badRequest("InvalidServerName", fmt.Sprintf("The server name '%s' is not 1 to 63 lower-case letters, digits, '-' and '.'.", name))
	}
	return nil
}

func (s *Server) joinServer(r *http.Request) (*response, error) {
	if s.clusterSecrets == nil {
		return nil, armError(http.StatusConflict, "ClusterNotInitialized",
			"This server runs a single embedded etcd member that other servers cannot reach: start the first server with --cluster-init to let servers join.")
	}
	var req ServerJoinRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if e := validServerName(req.Name); e != nil {
		return nil, e
	}
	if u, err := url.Parse(req.PeerURL); err != nil || u.Scheme != "https" || u.Port() == "" || u.Hostname() == "" || u.Path != "" {
		return nil, badRequest("InvalidPeerURL", fmt.Sprintf("The peer URL '%s' is not https://HOST:PORT.", req.PeerURL))
	}
	// A name in use is bad input: refuse it before the token is spent.
	members, err := s.cluster.Members(r.Context())
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if m.Name == req.Name {
			return nil, armError(http.StatusConflict, "ServerExists",
				fmt.Sprintf("A server called '%s' is already a member of the cluster; remove it first (berth cluster member remove %s).", req.Name, req.Name))
		}
	}
	if err := s.joinTokens.Consume(r.Context(), types.JoinServer, req.Token, req.Name); err != nil {
		return nil, err
	}
	initial, err := s.cluster.AddLearner(r.Context(), req.Name, req.PeerURL)
	if err != nil {
		return nil, err
	}
	log.G(r.Context()).Info("server joined", "server", req.Name, "peer_url", req.PeerURL, "join_token", join.ID(req.Token))
	return &response{status: http.StatusOK, body: ServerJoinResponse{
		CA: string(s.caPEM), CAKey: string(s.clusterSecrets.CAKeyPEM), AdminToken: s.clusterSecrets.AdminToken, InitialCluster: initial,
	}}, nil
}

func (s *Server) promoteMember(r *http.Request) (*response, error) {
	name := r.PathValue("name")
	if e := validServerName(name); e != nil {
		return nil, e
	}
	if err := s.cluster.Promote(r.Context(), name); err != nil {
		if errdefs.IsUnavailable(err) {
			return nil, armError(http.StatusServiceUnavailable, "MemberNotCaughtUp", err.Error())
		}
		if errdefs.IsNotFound(err) {
			return nil, armError(http.StatusNotFound, "MemberNotFound", fmt.Sprintf("The cluster has no member called '%s'.", name))
		}
		return nil, err
	}
	log.G(r.Context()).Info("etcd member promoted", "server", name)
	return &response{status: http.StatusOK}, nil
}

func (s *Server) removeMember(r *http.Request) (*response, error) {
	name := r.PathValue("name")
	if e := validServerName(name); e != nil {
		return nil, e
	}
	err := s.cluster.Remove(r.Context(), name)
	if errdefs.IsNotFound(err) {
		return &response{status: http.StatusNoContent}, nil
	}
	if err != nil {
		if errdefs.IsUnavailable(err) {
			return nil, armError(http.StatusServiceUnavailable, "MemberRemovalRefused",
				fmt.Sprintf("etcd refused to remove member '%s' now: %v. Removing it would leave too few healthy members for a quorum, or the others have not been connected long enough; retry in a few seconds.", name, err))
		}
		return nil, err
	}
	if err := s.storeServers().Delete(r.Context(), name, 0); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	log.G(r.Context()).Info("etcd member removed", "server", name)
	return &response{status: http.StatusOK}, nil
}
