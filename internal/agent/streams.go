package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

// execRuntime is what Streams needs of the container runtime.
type execRuntime interface {
	List(ctx context.Context) ([]runtime.Info, error)
	Exec(ctx context.Context, id string, spec runtime.ExecSpec) (uint32, error)
}

var _ execRuntime = (*runtime.Runtime)(nil)

// followPoll is how often Attach looks for new output once it has read
// everything; the shim appends to the log file and tells no one.
const followPoll = 100 * time.Millisecond

// Streams serves exec and attach on the containers of this node.
type Streams struct {
	rt      execRuntime
	logPath func(uid, container string) string
	poll    time.Duration
}

// NewStreams returns Streams that run execs through rt and follow the logs
// at logPath(uid, container) (Agent.LogPath).
func NewStreams(rt execRuntime, logPath func(uid, container string) string) *Streams {
	return &Streams{rt: rt, logPath: logPath, poll: followPoll}
}

// Exec runs spec in the named container of this incarnation of g and
// returns the exit code (see runtime.Runtime.Exec). A container that is not
// there is an errdefs.ErrNotFound error, one that does not run an
// errdefs.ErrFailedPrecondition error.
func (s *Streams) Exec(ctx context.Context, g *types.ContainerGroup, container string, spec runtime.ExecSpec) (uint32, error) {
	info, err := s.find(ctx, g, container)
	if err != nil {
		return 0, err
	}
	if info.Status != runtime.StatusRunning {
		return 0, fmt.Errorf("container '%s' of container group '%s' is not running: %w", container, g.Name, errdefs.ErrFailedPrecondition)
	}
	return s.rt.Exec(ctx, info.ID, spec)
}

// find returns the container of this incarnation of g by its labels.
func (s *Streams) find(ctx context.Context, g *types.ContainerGroup, container string) (runtime.Info, error) {
	infos, err := s.rt.List(ctx)
	if err != nil {
		return runtime.Info{}, err
	}
	for _, info := range infos {
		if info.Labels[runtime.LabelGroupUID] == g.UID && info.Labels[runtime.LabelContainer] == container {
			return info, nil
		}
	}
	return runtime.Info{}, fmt.Errorf("container '%s' of container group '%s' does not exist on this node: %w", container, g.Name, errdefs.ErrNotFound)
}

// Attach writes to out what the named container of g prints from now on
// (stdout and stderr, as the shim writes them to the log file), until ctx
// ends, out fails, or the log file goes away because the group was
// deleted; the last two end it with nil. Output printed before the call is
// not sent: attach shows live output, the logs API the history.
func (s *Streams) Attach(ctx context.Context, g *types.ContainerGroup, container string, out io.Writer) error {
	path := s.logPath(g.UID, container)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("container '%s' of container group '%s' has no output yet: %w", container, g.Name, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	return follow(ctx, f, path, out, s.poll)
}

// follow copies f to out as it grows, polling every poll, until ctx ends,
// out fails or path no longer names f.
func follow(ctx context.Context, f *os.File, path string, out io.Writer, poll time.Duration) error {
	buf := make([]byte, 32<<10)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				return nil // the reader went away
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if gone(f, path) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// gone reports whether path no longer names the open file f: the group's
// logs were removed (deleted group) or replaced.
func gone(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return true
	}
	b, err := os.Stat(path)
	if err != nil {
		return true
	}
	return !os.SameFile(a, b)
}
