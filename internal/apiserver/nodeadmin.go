package apiserver

import (
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/log"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// What the admin does with nodes, beside the list of nodes.go:
//
//	GET  /berth/v1/nodes/{node}            the node, its lease and the groups bound to it
//	POST /berth/v1/nodes/{node}/cordon     no new group is placed on it
//	POST /berth/v1/nodes/{node}/uncordon   groups may be placed on it again; a drain stops
//	POST /berth/v1/nodes/{node}/drain      cordon, and move its groups off
//
// The writes answer the node as stored. A drain is finished by the nodes
// controller, which moves the groups and then clears Draining; the node
// stays cordoned until uncordoned.

// nodeView is the answer of GET /berth/v1/nodes/{node}.
type nodeView struct {
	Node types.Node `json:"node"`
	// Lease is nil for a node that never renewed one.
	Lease *types.Lease `json:"lease"`
	// Groups are the store keys of the groups bound to the node.
	Groups []string `json:"groups"`
}

// adminRoutes serves the admin's node operations, and joining.
func (s *Server) adminRoutes() {
	const node = nodeAPIPrefix + "nodes/{node}"
	s.mux.Handle("GET "+node, s.wrap(adminOnly(s.showNode)))
	s.mux.Handle("POST "+node+"/cordon", s.wrap(adminOnly(s.setScheduling(func(n *types.Node) {
		n.Unschedulable = true
	}))))
	s.mux.Handle("POST "+node+"/uncordon", s.wrap(adminOnly(s.setScheduling(func(n *types.Node) {
		n.Unschedulable, n.Draining = false, false
	}))))
	s.mux.Handle("POST "+node+"/drain", s.wrap(adminOnly(s.setScheduling(func(n *types.Node) {
		n.Unschedulable, n.Draining = true, true
	}))))
	s.joinRoutes()
	s.clusterRoutes()
	s.snapshotRoutes()
}

func (s *Server) nodeRecords() store.Typed[types.Node] {
	return store.NewTyped[types.Node](s.store, types.PrefixNodes)
}

func nodeNotFound(name string) *Error {
	return armError(http.StatusNotFound, "NodeNotFound", fmt.Sprintf("The node '%s' was not found.", name))
}

func (s *Server) showNode(r *http.Request) (*response, error) {
	name := r.PathValue("node")
	if err := nodeplane.ValidNodeName(name); err != nil {
		return nil, badRequest("InvalidNodeName", err.Error())
	}
	ctx := r.Context()
	n, _, err := s.nodeRecords().Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil, nodeNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	v := nodeView{Node: n, Groups: []string{}}
	lease, _, err := store.NewTyped[types.Lease](s.store, types.PrefixLeases).Get(ctx, name)
	switch {
	case err == nil:
		v.Lease = &lease
	case !errdefs.IsNotFound(err):
		return nil, err
	}
	groups, _, err := s.nodes.Assigned(name).List(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		v.Groups = append(v.Groups, g.Key)
	}
	return &response{status: http.StatusOK, body: v}, nil
}

// setScheduling changes what the admin owns of a node (Unschedulable,
// Draining) at the revision it read, reading again when the agent or the
// nodes controller wrote the node meanwhile.
func (s *Server) setScheduling(change func(*types.Node)) handlerFunc {
	return func(r *http.Request) (*response, error) {
		name := r.PathValue("node")
		if err := nodeplane.ValidNodeName(name); err != nil {
			return nil, badRequest("InvalidNodeName", err.Error())
		}
		ctx := r.Context()
		nodes := s.nodeRecords()
		for attempt := 0; ; attempt++ {
			n, rev, err := nodes.Get(ctx, name)
			if errdefs.IsNotFound(err) {
				return nil, nodeNotFound(name)
			}
			if err != nil {
				return nil, err
			}
			before := n
			change(&n)
			if n.Unschedulable == before.Unschedulable && n.Draining == before.Draining {
				return &response{status: http.StatusOK, body: n}, nil
			}
			_, err = nodes.Update(ctx, name, n, rev)
			if errdefs.IsConflict(err) && attempt < 10 {
				continue
			}
			if errdefs.IsNotFound(err) {
				return nil, nodeNotFound(name)
			}
			if err != nil {
				return nil, err
			}
			log.G(ctx).Info("node scheduling changed", "node", name,
				"unschedulable", n.Unschedulable, "draining", n.Draining)
			return &response{status: http.StatusOK, body: n}, nil
		}
	}
}
