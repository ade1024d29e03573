package apiserver

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/join"
	"github.com/berth-dev/berth/internal/log"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/types"
)

// Joining, and the join tokens the admin hands out for it:
//
//	POST   /berth/v1/join                 a new node's CSR and token (public) -> join.Response
//	POST   /berth/v1/jointokens           {"ttl","description"} -> 201 the token, once (admin)
//	GET    /berth/v1/jointokens           every token, without secrets (admin)
//	DELETE /berth/v1/jointokens/{id}      200 deleted, 204 none (admin)
//
// A join makes no Node: the agent registers with its new certificate.

// maxJoinAddresses bounds the names a joining node puts in its certificate.
const maxJoinAddresses = 16

// maxTokenDescription bounds a join token's description.
const maxTokenDescription = 256

func (s *Server) joinRoutes() {
	if s.joinTokens == nil {
		return
	}
	s.mux.Handle("POST "+nodeAPIPrefix+"jointokens", s.wrap(adminOnly(s.createJoinToken)))
	s.mux.Handle("GET "+nodeAPIPrefix+"jointokens", s.wrap(adminOnly(s.listJoinTokens)))
	s.mux.Handle("DELETE "+nodeAPIPrefix+"jointokens/{id}", s.wrap(adminOnly(s.deleteJoinToken)))
	if s.signNode != nil && len(s.caPEM) > 0 {
		s.mux.Handle("POST "+nodeAPIPrefix+"join", s.wrap(s.joinNode))
	}
}

// adminOnly refuses every caller of the node protocol but the admin: a
// node's certificate does not let it mint tokens or cordon its peers.
func adminOnly(h handlerFunc) handlerFunc {
	return func(r *http.Request) (*response, error) {
		if !callerOf(r).admin {
			return nil, armError(http.StatusForbidden, "AuthorizationFailed",
				fmt.Sprintf("Only the admin may call %s %s.", r.Method, r.URL.Path))
		}
		return h(r)
	}
}

// joinNode signs a new node's certificate request against a join token.
// The request is checked and the certificate signed before the token is
// spent, so a bad request burns no token, and a bad token gets nothing.
func (s *Server) joinNode(r *http.Request) (*response, error) {
	var req join.Request
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if err := nodeplane.ValidNodeName(req.Node); err != nil {
		return nil, badRequest("InvalidNodeName", err.Error())
	}
	if len(req.Addresses) > maxJoinAddresses {
		return nil, badRequest("InvalidAddress", fmt.Sprintf("A node may name at most %d addresses, not %d.", maxJoinAddresses, len(req.Addresses)))
	}
	ips := make([]net.IP, 0, len(req.Addresses))
	for _, a := range req.Addresses {
		ip := net.ParseIP(a)
		if ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
			return nil, badRequest("InvalidAddress", fmt.Sprintf("The address '%s' is not a node's IP address.", a))
		}
		ips = append(ips, ip)
	}
	csr, err := base64.StdEncoding.DecodeString(req.CSR)
	if err != nil || len(csr) == 0 {
		return nil, badRequest("InvalidCertificateRequest", "The csr must be a DER certificate request in standard base64.")
	}
	cert, err := s.signNode(csr, req.Node, ips)
	if err != nil {
		return nil, err
	}
	if err := s.joinTokens.Consume(r.Context(), types.JoinNode, req.Token, req.Node); err != nil {
		return nil, err
	}
	log.G(r.Context()).Info("node joined", "node", req.Node, "join_token", join.ID(req.Token), "addresses", req.Addresses)
	return &response{status: http.StatusOK, body: join.Response{Certificate: string(cert), CA: string(s.caPEM)}}, nil
}

type createJoinTokenRequest struct {
	// TTL is a Go duration ("1h"); default join.DefaultTTL.
	TTL         string `json:"ttl"`
	Description string `json:"description"`
	// Role is "node" (the default) or "server" (berth server --join).
	Role string `json:"role"`
}

// createdJoinToken is the answer of a create: the only time the token is
// seen.
type createdJoinToken struct {
	Token       string    `json:"token"`
	ID          string    `json:"id"`
	Role        string    `json:"role"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// joinTokenView is a stored token as the admin sees it: no hash, and
// what the token is good for now.
type joinTokenView struct {
	ID          string    `json:"id"`
	Role        string    `json:"role"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	// State is Valid, Used or Expired.
	State  string    `json:"state"`
	UsedBy string    `json:"usedBy,omitempty"`
	UsedAt time.Time `json:"usedAt,omitzero"`
}

func (s *Server) createJoinToken(r *http.Request) (*response, error) {
	var req createJoinTokenRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	ttl := join.DefaultTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return nil, badRequest("InvalidTTL", fmt.Sprintf("The ttl '%s' is not a duration such as 1h or 30m.", req.TTL))
		}
		ttl = d
	}
	if len(req.Description) > maxTokenDescription {
		return nil, badRequest("InvalidDescription", fmt.Sprintf("The description may have at most %d characters.", maxTokenDescription))
	}
	var role types.JoinRole
	switch req.Role {
	case "", "node":
	case "server":
		role = types.JoinServer
	default:
		return nil, badRequest("InvalidRole", fmt.Sprintf("The role '%s' is not node or server.", req.Role))
	}
	tok, jt, err := s.joinTokens.Create(r.Context(), role, ttl, req.Description)
	if err != nil {
		return nil, err
	}
	log.G(r.Context()).Info("join token created", "join_token", jt.ID, "role", roleName(jt.Role), "expires_at", jt.ExpiresAt)
	return &response{status: http.StatusCreated, body: createdJoinToken{
		Token: tok, ID: jt.ID, Role: roleName(jt.Role), Description: jt.Description, CreatedAt: jt.CreatedAt, ExpiresAt: jt.ExpiresAt,
	}}, nil
}

func (s *Server) listJoinTokens(r *http.Request) (*response, error) {
	list, err := s.joinTokens.List(r.Context())
	if err != nil {
		return nil, err
	}
	now := s.now()
	items := make([]joinTokenView, 0, len(list))
	for _, jt := range list {
		v := joinTokenView{ID: jt.ID, Role: roleName(jt.Role), Description: jt.Description, CreatedAt: jt.CreatedAt, ExpiresAt: jt.ExpiresAt,
			State: "Valid", UsedBy: jt.UsedBy, UsedAt: jt.UsedAt}
		switch {
		case jt.UsedBy != "":
			v.State = "Used"
		case !now.Before(jt.ExpiresAt):
			v.State = "Expired"
		}
		items = append(items, v)
	}
	return &response{status: http.StatusOK, body: map[string]any{"items": items}}, nil
}

// deleteJoinToken answers as ARM deletes do: 200 when the token was
// there, 204 when it was not.
func (s *Server) deleteJoinToken(r *http.Request) (*response, error) {
	id := r.PathValue("id")
	err := s.joinTokens.Delete(r.Context(), id)
	if errdefs.IsNotFound(err) {
		return &response{status: http.StatusNoContent}, nil
	}
	if err != nil {
		return nil, err
	}
	log.G(r.Context()).Info("join token deleted", "join_token", id)
	return &response{status: http.StatusOK}, nil
}

// roleName is a token's role on the wire.
func roleName(r types.JoinRole) string {
	if r == types.JoinServer {
		return "server"
	}
	return "node"
}
