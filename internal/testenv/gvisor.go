package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// RunscPath is where hack/setup.sh installs the pinned runsc.
const RunscPath = "/usr/local/lib/berth/runsc"

// ShimModuleDir is the directory of Berth's gVisor shim module (shim/runsc),
// found from this file's place in the source tree.
func ShimModuleDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "shim", "runsc")
}

// RequireRunsc skips t (fails it under BERTH_E2E=1) unless runsc is
// installed at RunscPath, and returns that path.
func RequireRunsc(t testing.TB) string {
	t.Helper()
	RequireBinary(t, RunscPath)
	return RunscPath
}

// BuildRunscShim builds Berth's gVisor shim (containerd-shim-runsc-v1, a
// module of its own) once per test binary and returns its path. The binary
// is static: the sandboxes run it as their pause process.
// BERTH_RUNSC_SHIM, when set, names a prebuilt one to use instead.
func BuildRunscShim(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("BERTH_RUNSC_SHIM"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("BERTH_RUNSC_SHIM: %v", err)
		}
		return abs
	}
	return cachedBuild(t, "shim", "containerd-shim-runsc-v1", func(ctx context.Context, out string) error {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, ".")
		cmd.Dir = ShimModuleDir()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", cmd.Dir, err, b)
		}
		return nil
	})
}
