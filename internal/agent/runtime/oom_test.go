package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/agent/runtime"
)

// TestRuntime_OOMVerdict: under runc the runtime tells an OOM kill from
// another SIGKILL by the container's memory cgroup, which it finds under
// its own cgroup parent (newEnv's is not the default one).
func TestRuntime_OOMVerdict(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	run := func(t *testing.T, script string, memory int64) runtime.ContainerSpec {
		t.Helper()
		spec := e.spec(t, script)
		spec.MemoryBytes = memory
		if err := e.rt.Create(ctx, spec); err != nil {
			t.Fatalf("Create: %v", err)
		}
		t.Cleanup(func() { _ = e.rt.Remove(context.Background(), spec.ID, 0) })
		exited, err := e.rt.Wait(ctx, spec.ID)
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if err := e.rt.Start(ctx, spec.ID); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if ex := waitExit(t, exited, time.Minute); ex.Code != 137 {
			t.Fatalf("exited with %d, want 137", ex.Code)
		}
		return spec
	}

	t.Run("a container over its memory limit is OOMKilled in Get and List", func(t *testing.T) {
		// Doubles a shell string until memory runs out.
		hog := run(t, `x=a; i=0; while [ $i -lt 40 ]; do x=$x$x; i=$((i+1)); done`, 32<<20)
		if i, err := e.rt.Get(ctx, hog.ID); err != nil || !i.OOMKilled || i.ExitCode != 137 {
			t.Errorf("Get: %+v, %v; want OOMKilled with 137", i, err)
		}
		infos, err := e.rt.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i, ok := find(infos, hog.ID); !ok || !i.OOMKilled {
			t.Errorf("List: %+v; want OOMKilled", i)
		}
	})

	t.Run("a container that exits 137 without an OOM kill is not OOMKilled", func(t *testing.T) {
		// The container's init cannot SIGKILL itself; a child can.
		quitter := run(t, `sh -c 'kill -9 $$'; exit $?`, 32<<20)
		if i, err := e.rt.Get(ctx, quitter.ID); err != nil || i.OOMKilled {
			t.Errorf("Get: %+v, %v; want not OOMKilled", i, err)
		}
	})
}
