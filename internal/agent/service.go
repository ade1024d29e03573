package agent

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/types"
)

// Service returns what this node offers the API for its groups (logs,
// exec, attach), to be served in process or by a node server. It serves
// only the incarnation of a group that the control plane binds to this
// node: a caller with a stale view (the group moved to another node, or
// was deleted and created again) gets errdefs.ErrNotFound rather than the
// output or a shell of another incarnation.
func (a *Agent) Service() nodeapi.Service {
	return &service{a: a, streams: NewStreams(a.opts.Runtime, a.LogPath)}
}

type service struct {
	a       *Agent
	streams *Streams
}

var _ nodeapi.Service = (*service)(nil)

func (s *service) ReadLog(ctx context.Context, req nodeapi.LogRequest) (string, error) {
	g, err := s.group(req.Group)
	if err != nil {
		return "", err
	}
	return s.a.ReadLog(ctx, g, req.Container, req.Tail)
}

func (s *service) Exec(ctx context.Context, req nodeapi.ExecRequest) (uint32, error) {
	g, err := s.group(req.Group)
	if err != nil {
		return 0, err
	}
	return s.streams.Exec(ctx, g, req.Container, runtime.ExecSpec{
		ID:     req.ID,
		Args:   req.Args,
		Rows:   req.Rows,
		Cols:   req.Cols,
		Stdin:  req.Stdin,
		Output: req.Output,
	})
}

func (s *service) Attach(ctx context.Context, req nodeapi.AttachRequest) error {
	g, err := s.group(req.Group)
	if err != nil {
		return err
	}
	return s.streams.Attach(ctx, g, req.Container, req.Output)
}

// group returns the group ref names if that very incarnation is bound
// to this node (the agent's cache of its assigned groups).
func (s *service) group(ref nodeapi.GroupRef) (*types.ContainerGroup, error) {
	g := s.a.group(ref.Key)
	if g == nil || g.UID != ref.UID {
		return nil, fmt.Errorf("container group '%s' (incarnation %s) is not on this node: %w", ref.Name, ref.UID, errdefs.ErrNotFound)
	}
	return g, nil
}
