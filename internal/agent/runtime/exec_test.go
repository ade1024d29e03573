package runtime_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/berth-dev/berth/internal/agent/runtime"
)

// lockedBuffer is a bytes.Buffer safe for the IO goroutines and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRuntime_Exec(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	spec := e.spec(t, "trap 'exit 0' TERM; while true; do sleep 1; done")
	if err := e.rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = e.rt.Remove(context.Background(), spec.ID, 0) })
	rawCtx, raw := e.raw(t)

	// execGone checks that containerd no longer knows the exec process.
	execGone := func(t *testing.T, execID string) {
		t.Helper()
		_, err := raw.TaskService().Get(rawCtx, &tasksapi.GetRequest{ContainerID: spec.ID, ExecID: execID})
		if err = errgrpc.ToNative(err); !errdefs.IsNotFound(err) {
			t.Errorf("exec %s: got %v from containerd, want not found", execID, err)
		}
	}

	t.Run("a task that was never started is refused", func(t *testing.T) {
		_, err := e.rt.Exec(ctx, spec.ID, runtime.ExecSpec{ID: "e0", Args: []string{"true"}, Stdin: strings.NewReader(""), Output: io.Discard})
		if !errdefs.IsFailedPrecondition(err) {
			t.Errorf("got %v, want a failed precondition", err)
		}
		execGone(t, "e0")
	})
	if err := e.rt.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}

	t.Run("output, exit code and terminal size", func(t *testing.T) {
		var out lockedBuffer
		pr, pw := io.Pipe()
		defer pw.Close()
		code, err := e.rt.Exec(ctx, spec.ID, runtime.ExecSpec{
			ID: "e1", Args: []string{"sh", "-c", "stty size; echo hi $TERM; exit 4"}, Rows: 33, Cols: 101,
			Stdin: pr, Output: &out,
		})
		if err != nil || code != 4 {
			t.Fatalf("Exec: got %d %v, want exit 4", code, err)
		}
		if got := out.String(); !strings.Contains(got, "33 101") || !strings.Contains(got, "hi xterm") {
			t.Errorf("got output %q, want the size 33 101 and hi xterm", got)
		}
		execGone(t, "e1")
	})

	t.Run("stdin reaches the terminal", func(t *testing.T) {
		var out lockedBuffer
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = pw.Write([]byte("echo $((6*7)); exit 0\r")) }()
		code, err := e.rt.Exec(ctx, spec.ID, runtime.ExecSpec{ID: "e2", Args: []string{"/bin/sh"}, Stdin: pr, Output: &out})
		if err != nil || code != 0 {
			t.Fatalf("Exec: got %d %v", code, err)
		}
		if !strings.Contains(out.String(), "42\r\n") {
			t.Errorf("got %q, want 42", out.String())
		}
		execGone(t, "e2")
	})

	t.Run("a missing executable fails and leaves nothing", func(t *testing.T) {
		_, err := e.rt.Exec(ctx, spec.ID, runtime.ExecSpec{ID: "e3", Args: []string{"/no/such/thing"}, Stdin: strings.NewReader(""), Output: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "/no/such/thing") {
			t.Errorf("got %v, want an error naming /no/such/thing", err)
		}
		execGone(t, "e3")
	})

	t.Run("the end of ctx kills the process", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		pr, pw := io.Pipe()
		defer pw.Close()
		start := time.Now()
		_, err := e.rt.Exec(cctx, spec.ID, runtime.ExecSpec{ID: "e4", Args: []string{"sleep", "100"}, Stdin: pr, Output: io.Discard})
		if err == nil || time.Since(start) > 20*time.Second {
			t.Errorf("got %v after %s, want the context's error soon", err, time.Since(start))
		}
		execGone(t, "e4")
		pids, err := raw.TaskService().ListPids(rawCtx, &tasksapi.ListPidsRequest{ContainerID: spec.ID})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pids.Processes {
			if p.Info != nil {
				t.Errorf("exec process %d still in the container", p.Pid)
			}
		}
	})

	t.Run("invalid specs are refused", func(t *testing.T) {
		for _, s := range []runtime.ExecSpec{{Args: []string{"true"}}, {ID: "e5"}, {ID: "e5", Args: []string{""}}} {
			if _, err := e.rt.Exec(ctx, spec.ID, s); !errdefs.IsInvalidArgument(err) {
				t.Errorf("%+v: got %v, want invalid argument", s, err)
			}
		}
	})
}
