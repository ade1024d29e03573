package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/types"
)

// changeGroup applies fn to the stored group and writes it back with a
// revision check, retrying when another request changed it meanwhile.
// fn returns false when there is nothing to write.
func (s *Server) changeGroup(ctx context.Context, key string, fn func(g *types.ContainerGroup) (bool, error)) (*types.ContainerGroup, error) {
	for {
		g, rev, err := s.groups.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if g.Deleting {
			return nil, armError(http.StatusConflict, "ContainerGroupTransitioning",
				fmt.Sprintf("The container group '%s' is being deleted.", g.Name))
		}
		write, err := fn(&g)
		if err != nil || !write {
			return &g, err
		}
		_, err = s.groups.Update(ctx, key, g, rev)
		if errors.Is(err, errdefs.ErrConflict) {
			continue
		}
		return &g, err
	}
}

// patchGroup updates tags only, as ACI's Update does.
func (s *Server) patchGroup(r *http.Request) (*response, error) {
	cur, err := s.group(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Tags map[string]string `json:"tags"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	g, err := s.changeGroup(r.Context(), cur.Key(), func(g *types.ContainerGroup) (bool, error) {
		g.Tags = body.Tags
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &response{status: http.StatusOK, body: groupToWire(g, s.groupStatus(r, g), true)}, nil
}

// stopGroup kills the containers and frees the group's node resources; the
// group and its spec stay. Synchronous (204), as in ACI.
func (s *Server) stopGroup(r *http.Request) (*response, error) {
	cur, err := s.group(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.changeGroup(r.Context(), cur.Key(), func(g *types.ContainerGroup) (bool, error) {
		if g.Stopped {
			return false, nil
		}
		g.Stopped = true
		return true, nil
	}); err != nil {
		return nil, err
	}
	return &response{status: http.StatusNoContent}, nil
}

// startGroup deploys a stopped group again: a new generation, polled as a
// long-running operation. A group that runs already answers 204.
func (s *Server) startGroup(r *http.Request) (*response, error) {
	cur, err := s.group(r)
	if err != nil {
		return nil, err
	}
	if !cur.Stopped {
		return &response{status: http.StatusNoContent}, nil
	}
	var op types.Operation
	g, err := s.changeGroup(r.Context(), cur.Key(), func(g *types.ContainerGroup) (bool, error) {
		if !g.Stopped {
			return false, nil
		}
		g.Stopped = false
		g.Generation++
		op = s.newOperation(types.OperationStart, g)
		if _, err := s.ops.Create(r.Context(), op.ID, op); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if op.ID == "" || g.Stopped {
		return &response{status: http.StatusNoContent}, nil
	}
	return &response{status: http.StatusAccepted, header: s.asyncHeaders(r, &op)}, nil
}

// restartGroup restarts every container in place (same IP). The SDK
// v2.4.0 accepts only 204; the Azure-AsyncOperation header lets it wait
// until the containers run again.
func (s *Server) restartGroup(r *http.Request) (*response, error) {
	cur, err := s.group(r)
	if err != nil {
		return nil, err
	}
	if cur.Stopped {
		return nil, armError(http.StatusConflict, "ContainerGroupStopped",
			fmt.Sprintf("The container group '%s' is stopped. Start it instead of restarting it.", cur.Name))
	}
	var op types.Operation
	if _, err := s.changeGroup(r.Context(), cur.Key(), func(g *types.ContainerGroup) (bool, error) {
		g.Restarts++
		op = s.newOperation(types.OperationRestart, g)
		if _, err := s.ops.Create(r.Context(), op.ID, op); err != nil {
			return false, err
		}
		return true, nil
	}); err != nil {
		return nil, err
	}
	return &response{status: http.StatusNoContent, header: s.asyncHeaders(r, &op)}, nil
}

// outboundDependencies is always empty: Berth needs no outbound endpoints.
func (s *Server) outboundDependencies(r *http.Request) (*response, error) {
	if _, err := s.group(r); err != nil {
		return nil, err
	}
	return &response{status: http.StatusOK, body: []string{}}, nil
}

// checkUpdate applies ACI's update rules: the OS, restart policy, network
// and resources of a group cannot change in place.
func checkUpdate(name string, old, new *types.GroupSpec) error {
	refuse := func(what string) error {
		return badRequest("InvalidContainerGroupUpdate", fmt.Sprintf(
			"The updates on container group '%s' are invalid (%s changed). If you are going to update the os type, restart policy, network profile, CPU, memory or GPU resources for a container group, you must delete it first and then create a new one.",
			name, what))
	}
	if old.OSType != new.OSType {
		return refuse("os type")
	}
	if old.RestartPolicy != new.RestartPolicy {
		return refuse("restart policy")
	}
	if (old.IPAddress == nil) != (new.IPAddress == nil) || (old.IPAddress != nil && old.IPAddress.Type != new.IPAddress.Type) {
		return refuse("network profile")
	}
	if (old.Subnet == nil) != (new.Subnet == nil) || (old.Subnet != nil && (old.Subnet.VirtualNetwork != new.Subnet.VirtualNetwork || !strings.EqualFold(old.Subnet.Name, new.Subnet.Name))) {
		return refuse("subnet")
	}
	if len(old.Containers) != len(new.Containers) {
		return refuse("CPU and memory: containers were added or removed")
	}
	res := map[string]types.Resources{}
	for _, c := range old.Containers {
		res[c.Name] = c.Resources
	}
	for _, c := range new.Containers {
		o, ok := res[c.Name]
		if !ok || o.Requests != c.Resources.Requests || o.Effective() != c.Resources.Effective() {
			return refuse("CPU or memory of container '" + c.Name + "'")
		}
	}
	return nil
}
