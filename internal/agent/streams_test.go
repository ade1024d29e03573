package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

type fakeExecRuntime struct {
	infos []runtime.Info
	execs []string // container ids
}

func (f *fakeExecRuntime) List(context.Context) ([]runtime.Info, error) { return f.infos, nil }

func (f *fakeExecRuntime) Exec(_ context.Context, id string, spec runtime.ExecSpec) (uint32, error) {
	f.execs = append(f.execs, id)
	return 3, nil
}

func TestStreamsExec_FindsTheContainerOfThisIncarnation(t *testing.T) {
	labels := func(uid, name string) map[string]string {
		return map[string]string{runtime.LabelGroupUID: uid, runtime.LabelContainer: name}
	}
	rt := &fakeExecRuntime{infos: []runtime.Info{
		{ID: "old-web", Labels: labels("old", "web"), Status: runtime.StatusRunning},
		{ID: "new-web", Labels: labels("new", "web"), Status: runtime.StatusRunning},
		{ID: "new-side", Labels: labels("new", "side"), Status: runtime.StatusStopped},
	}}
	s := NewStreams(rt, func(uid, c string) string { return "" })
	g := &types.ContainerGroup{Name: "g", UID: "new"}
	spec := runtime.ExecSpec{ID: "x", Args: []string{"sh"}}

	code, err := s.Exec(context.Background(), g, "web", spec)
	if err != nil || code != 3 || len(rt.execs) != 1 || rt.execs[0] != "new-web" {
		t.Errorf("exec in web: got %d %v on %v, want exit 3 in new-web", code, err, rt.execs)
	}
	if _, err := s.Exec(context.Background(), g, "side", spec); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("exec in a stopped container: got %v, want a failed precondition", err)
	}
	if _, err := s.Exec(context.Background(), g, "nope", spec); !errdefs.IsNotFound(err) {
		t.Errorf("exec in a missing container: got %v, want not found", err)
	}
	if len(rt.execs) != 1 {
		t.Errorf("refused execs reached the runtime: %v", rt.execs)
	}
}

// syncBuffer is a strings.Builder safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStreamsAttach(t *testing.T) {
	dir := t.TempDir()
	logPath := func(uid, c string) string { return filepath.Join(dir, uid, c+".log") }
	s := NewStreams(&fakeExecRuntime{}, logPath)
	s.poll = 5 * time.Millisecond
	g := &types.ContainerGroup{Name: "g", UID: "u1"}
	path := logPath("u1", "web")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("before attach\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	appendLog := func(s string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("it follows new output until ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var out syncBuffer
		done := make(chan error, 1)
		go func() { done <- s.Attach(ctx, g, "web", &out) }()
		time.Sleep(50 * time.Millisecond) // let it open the file and seek
		appendLog("one\n")
		appendLog("two\n")
		waitFor(t, "two lines", func() bool { return out.String() == "one\ntwo\n" })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Attach: %v", err)
		}
		if strings.Contains(out.String(), "before attach") {
			t.Errorf("attach sent output from before it started: %q", out.String())
		}
	})

	t.Run("it ends when the log is removed, after the last output", func(t *testing.T) {
		var out syncBuffer
		done := make(chan error, 1)
		go func() { done <- s.Attach(context.Background(), g, "web", &out) }()
		time.Sleep(50 * time.Millisecond)
		appendLog("last\n")
		if err := os.RemoveAll(filepath.Dir(path)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Attach: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Attach did not end after the log was removed")
		}
		if out.String() != "last\n" {
			t.Errorf("got %q, want the last line", out.String())
		}
	})

	t.Run("a container without a log is refused", func(t *testing.T) {
		err := s.Attach(context.Background(), g, "web", &syncBuffer{})
		if !errdefs.IsFailedPrecondition(err) {
			t.Errorf("got %v, want a failed precondition", err)
		}
	})
}
