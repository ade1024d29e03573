package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestMain runs the test binary as the wrapper when a test runs it by a
// link named berth-runsc, as the shim runs the shim binary.
func TestMain(m *testing.M) {
	if isWrapper(os.Args[0]) {
		os.Exit(runWrapper(os.Args))
	}
	os.Exit(m.Run())
}

func TestParseExec(t *testing.T) {
	// The command line of gVisor's shim (runsccmd.Runsc.Exec).
	global := "--root=/run/r/berth --log=/b/log.json --log-format=json --platform=systrap --network=sandbox"
	shim := global + " exec --process /tmp/runsc-process1 --console-socket /tmp/pty1/pty.sock --detach --pid-file /b/e.pid --internal-pid-file /b/e-internal.pid ctr"
	tests := []struct {
		name, args string
		want       execCmd
		wantOK     bool
	}{
		{"the shim's exec with a terminal", shim, execCmd{
			args:          strings.Fields(global + " exec --process /tmp/runsc-process1 --pid-file /b/e.pid --internal-pid-file /b/e-internal.pid ctr"),
			consoleSocket: "/tmp/pty1/pty.sock", processFile: "/tmp/runsc-process1", pidFile: "/b/e.pid", detach: true,
		}, true},
		{"--debug among the global flags", "--root=/r --debug exec --process=/p --console-socket=/s --detach --pid-file=/f c", execCmd{
			args:          strings.Fields("--root=/r --debug exec --process=/p --pid-file=/f c"),
			consoleSocket: "/s", processFile: "/p", pidFile: "/f", detach: true,
		}, true},
		{"single dashes, not detached", "exec -console-socket /s -process /p -cwd /w c", execCmd{
			args:          strings.Fields("exec -process /p -cwd /w c"),
			consoleSocket: "/s", processFile: "/p",
		}, true},
		{"--detach=false", "exec --detach=false --console-socket=/s --process /p c", execCmd{
			args:          strings.Fields("exec --process /p c"),
			consoleSocket: "/s", processFile: "/p",
		}, true},
		{"flags after the container id are not exec's", "exec --console-socket /s --process /p c --detach", execCmd{
			args:          strings.Fields("exec --process /p c --detach"),
			consoleSocket: "/s", processFile: "/p",
		}, true},
		{"exec without a terminal", global + " exec --process /p --detach --pid-file /f c", execCmd{}, false},
		{"exec of a command line has no size", "exec --console-socket /s c sh", execCmd{}, false},
		{"detached without a pid file", "exec --process /p --console-socket /s --detach c", execCmd{}, false},
		{"an unknown exec flag", "exec --process /p --console-socket /s --new-flag c", execCmd{}, false},
		{"a flag without its value", "exec --process /p --console-socket", execCmd{}, false},
		{"a bad boolean", "exec --process /p --console-socket /s --detach=maybe --pid-file /f c", execCmd{}, false},
		{"create", global + " create --bundle /b --console-socket /s --pid-file /f c", execCmd{}, false},
		{"kill", "--root=/r kill --all c 9", execCmd{}, false},
		{"no command", "--root=/r", execCmd{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseExec(strings.Fields(tt.args))
			if ok != tt.wantOK || !slices.Equal(got.args, tt.want.args) || got.consoleSocket != tt.want.consoleSocket ||
				got.processFile != tt.want.processFile || got.pidFile != tt.want.pidFile || got.detach != tt.want.detach {
				t.Errorf("parseExec =\n %+v, %v\nwant\n %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// fakeRunsc is the real runsc of the tests: it writes its arguments to
// $ARGS_FILE, and as exec prints its terminal's size and whether the
// terminal is its controlling one, writes its pid file and exits 7.
const fakeRunsc = `#!/bin/sh
echo "$@" > "$ARGS_FILE"
case " $* " in *" exec "*) ;; *) exit 0 ;; esac
while [ $# -gt 0 ]; do
	case "$1" in --pid-file) pidfile=$2; shift ;; esac
	shift
done
echo "size $(stty size)"
if (exec 3</dev/tty) 2>/dev/null; then echo ctty; else echo "no ctty"; fi
[ -n "$pidfile" ] && echo $$ > "$pidfile"
exit 7
`

// wrapperDir makes the wrapper's links as Berth does: berth-runsc to the
// test binary, runsc to fakeRunsc.
func wrapperDir(t *testing.T) (wrapper, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(dir, wrapperName)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fake-runsc"), []byte(fakeRunsc), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "fake-runsc"), filepath.Join(dir, realRunscName)); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, wrapperName), filepath.Join(dir, "args")
}

func TestWrapperPassesOtherCommandsThrough(t *testing.T) {
	wrapper, argsFile := wrapperDir(t)
	args := []string{"--root=/r", "--log-format=json", "exec", "--process", "/p", "--detach", "--pid-file", "/f", "c"}
	cmd := exec.Command(wrapper, args...)
	cmd.Env = append(os.Environ(), "ARGS_FILE="+argsFile)
	out, err := cmd.CombinedOutput()
	// The fake runsc exits 7 as exec; run unchanged, it has no pid file
	// to write (the wrapper did not wait for one).
	if exit := (*exec.ExitError)(nil); !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Fatalf("wrapper: %v, output %q; want exit status 7", err, out)
	}
	if got, _ := os.ReadFile(argsFile); strings.TrimSpace(string(got)) != strings.Join(args, " ") {
		t.Errorf("runsc got arguments %q, want %q", got, strings.Join(args, " "))
	}
	if !strings.Contains(string(out), "size") {
		t.Errorf("runsc's output %q does not come through", out)
	}
}

func TestWrapperExecHasTheConsoleSize(t *testing.T) {
	// The shim is the subreaper of runsc's exec children; so is the test,
	// to reap the one the wrapper leaves.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

	for _, detach := range []bool{true, false} {
		t.Run(map[bool]string{true: "detached", false: "attached"}[detach], func(t *testing.T) {
			wrapper, argsFile := wrapperDir(t)
			dir := filepath.Dir(wrapper)
			process, err := json.Marshal(specs.Process{Terminal: true, Cwd: "/", Args: []string{"sh"}, ConsoleSize: &specs.Box{Height: 30, Width: 100}})
			if err != nil {
				t.Fatal(err)
			}
			processFile, pidFile := filepath.Join(dir, "process.json"), filepath.Join(dir, "exec.pid")
			if err := os.WriteFile(processFile, process, 0o600); err != nil {
				t.Fatal(err)
			}
			// The receiving end of gVisor's shim (and runc's).
			socket, err := runc.NewTempConsoleSocket()
			if err != nil {
				t.Fatal(err)
			}
			defer socket.Close()

			args := []string{"--root=/r", "exec", "--process", processFile, "--console-socket", socket.Path(), "--pid-file", pidFile, "c"}
			if detach {
				args = slices.Insert(args, 2, "--detach")
			}
			cmd := exec.Command(wrapper, args...)
			cmd.Env = append(os.Environ(), "ARGS_FILE="+argsFile)
			out, err := cmd.CombinedOutput()
			wantCode := 0
			if !detach {
				wantCode = 7 // the exec's own, passed through
			}
			if code := cmd.ProcessState.ExitCode(); code != wantCode {
				t.Fatalf("wrapper exited %d (%v), output %q; want %d", code, err, out, wantCode)
			}
			master, err := socket.ReceiveMaster()
			if err != nil {
				t.Fatal(err)
			}
			defer master.Close()
			if size, err := master.Size(); err != nil || size.Height != 30 || size.Width != 100 {
				t.Errorf("pty size %+v, %v; want 30x100", size, err)
			}
			if detach {
				if ws := waitChild(t, pidFile); ws.ExitStatus() != 7 {
					t.Errorf("exec child exit status %d, want 7", ws.ExitStatus())
				}
			}
			got := readPty(t, master)
			for _, want := range []string{"size 30 100", "ctty\r\n"} {
				if !strings.Contains(got, want) {
					t.Errorf("terminal printed %q, want %q in it", got, want)
				}
			}
			wantArgs := "--root=/r exec --process " + processFile + " --pid-file " + pidFile + " c"
			if b, _ := os.ReadFile(argsFile); strings.TrimSpace(string(b)) != wantArgs {
				t.Errorf("runsc got arguments %q, want %q", b, wantArgs)
			}
		})
	}
}

// waitChild reaps the orphaned exec child whose pid is in pidFile.
func waitChild(t *testing.T, pidFile string) unix.WaitStatus {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	for range 500 {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil {
			t.Fatalf("wait for exec child %d: %v", pid, err)
		}
		if got == pid {
			return ws
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("exec child %d did not exit", pid)
	return ws
}

// readPty reads what was written to the pty until its replica is closed.
func readPty(t *testing.T, master io.Reader) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 1024)
	for {
		n, err := master.Read(buf)
		b.Write(buf[:n])
		if errors.Is(err, syscall.EIO) || errors.Is(err, io.EOF) {
			return b.String()
		}
		if err != nil {
			t.Fatalf("read pty: %v", err)
		}
	}
}
