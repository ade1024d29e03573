package daemon

import (
	"context"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/apiserver"
)

// execer serves the API's exec and attach sessions with the in-process
// agent's streams. A remote agent would get them over its own connection.
type execer struct{ streams *agent.Streams }

var _ apiserver.Execer = execer{}

func (e execer) Exec(ctx context.Context, req apiserver.ExecRequest) (uint32, error) {
	return e.streams.Exec(ctx, req.Group, req.Container, runtime.ExecSpec{
		ID:     req.ID,
		Args:   req.Args,
		Rows:   req.Rows,
		Cols:   req.Cols,
		Stdin:  req.Stdin,
		Output: req.Output,
	})
}

func (e execer) Attach(ctx context.Context, req apiserver.AttachRequest) error {
	return e.streams.Attach(ctx, req.Group, req.Container, req.Output)
}
