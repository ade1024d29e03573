// Package testenv starts the real daemons Berth's integration and end-to-end
// tests run against (containerd, an OCI registry, the berth server) and
// removes every trace of them when the test ends.
//
// Helpers take a testing.TB, fail the test on any error, and register their
// cleanup with t.Cleanup, so callers never tear anything down themselves.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireRoot skips t unless it runs as root. When BERTH_E2E=1 (make test
// sets it) a missing prerequisite is a failure instead, so CI never passes by
// skipping the real parts.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BERTH_E2E") == "1" {
		t.Fatal("test needs root (BERTH_E2E=1 forbids skipping)")
	}
	t.Skip("test needs root")
}

// RequireBinary is RequireRoot's companion for executables: skip when path
// is not installed, fail instead under BERTH_E2E=1.
func RequireBinary(t testing.TB, path string) {
	t.Helper()
	if _, err := exec.LookPath(path); err == nil {
		return
	}
	if os.Getenv("BERTH_E2E") == "1" {
		t.Fatalf("test needs %s (BERTH_E2E=1 forbids skipping; run hack/setup.sh)", path)
	}
	t.Skipf("test needs %s (run hack/setup.sh)", path)
}

// maxLogDump bounds how much of a daemon log a failing test prints: the end
// of the log is where the cause is, and a full containerd log drowns it.
const maxLogDump = 64 << 10

// dumpLogOnFailure registers a cleanup that prints the tail of the log file
// at path when t failed. Register it before the cleanup that stops the
// daemon so that it runs after it and includes the shutdown messages.
func dumpLogOnFailure(t testing.TB, name, path string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("----- %s log (%s) -----\n%s\n----- end of %s log -----", name, path, logTail(path), name)
	})
}

// logTail returns the last maxLogDump bytes of the file at path.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if len(b) > maxLogDump {
		b = b[len(b)-maxLogDump:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		return "(earlier lines cut)\n" + string(b)
	}
	return string(b)
}

// daemonAttrs puts a child daemon in its own process group, so that signals
// sent to the test's group (Ctrl-C) do not race our ordered shutdown, and
// asks the kernel to SIGTERM it if the test binary dies without cleaning up
// (a go test timeout panic skips t.Cleanup).
func daemonAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// startDaemon starts cmd (with daemonAttrs) from one OS thread that lives
// as long as the test binary. The kernel sends Pdeathsig when the thread
// that forked the child ends, not the process, and Go ends every thread a
// goroutine leaves locked, as the network namespace code does after
// switching namespaces: a daemon forked from such a thread would get
// SIGTERM in the middle of the test.
func startDaemon(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawns = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread stays
			for r := range spawns {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawns <- spawnReq{cmd: cmd, done: done}
	return <-done
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan<- error
}

var (
	spawnOnce sync.Once
	spawns    chan spawnReq
)

// stopProcess sends SIGTERM to cmd's process group, waits up to grace for
// done to close, and then sends SIGKILL. It reports whether the process
// stopped within the grace period.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) bool {
	select {
	case <-done:
		return true
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
		return true
	case <-time.After(grace):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return false
}

// shortTempDir makes a directory directly under /tmp. Unix socket paths must
// stay below 108 bytes, which t.TempDir's long per-test names can exceed.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatalf("create temp dir: %v", err)
	}
	return dir
}

// sanitize turns a test name into something usable in a file name.
func sanitize(name string) string {
	r := strings.NewReplacer("/", "_", " ", "_", ":", "_")
	return r.Replace(name)
}
