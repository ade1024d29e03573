package main

// The runsc wrapper: gVisor's task service runs the runsc named by its
// config's binary_name for every container operation. Berth points that at
// a link named wrapperName to this binary, which runs the real runsc (the
// link realRunscName next to it) unchanged, except for one command.
//
// `runsc exec --console-socket S` creates the exec's pty itself, with no
// size, sends its master over S and starts the process at once: the OCI
// process's consoleSize is ignored, and the terminal has no size until the
// resize that follows the start. A command that reads its size at once
// (stty size, a full-screen program) sees 0x0. runc applies consoleSize
// before the process runs. For that command the wrapper does what runsc
// would, with the size set first: it creates the pty, sizes it, sends the
// master over the socket, and runs runsc's exec without --console-socket
// and --detach, on the replica as its stdio and controlling terminal
// (runsc then takes the process's terminal from the spec's terminal field,
// and forwards the terminal's SIGWINCH to it). --detach it does itself, as
// runsc does: it returns once the child wrote its pid file, and leaves the
// child, unreaped, to the shim, the subreaper that reports its exit.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	// wrapperName is the name (of a link to this binary) under which it is
	// the runsc wrapper.
	wrapperName = "berth-runsc"
	// realRunscName is the link, next to the wrapper's, to the real runsc.
	realRunscName = "runsc"
	// pidFileTimeout bounds the wait for a detached exec's pid file, as
	// runsc bounds its own.
	pidFileTimeout = 10 * time.Second
)

// isWrapper tells whether argv0 runs the binary as the runsc wrapper.
func isWrapper(argv0 string) bool { return filepath.Base(argv0) == wrapperName }

// runWrapper runs runsc for args (os.Args); it returns only on failure.
func runWrapper(args []string) int {
	dir := filepath.Dir(args[0])
	if !filepath.IsAbs(dir) {
		fmt.Fprintf(os.Stderr, "%s: run by a relative name %q: want an absolute path, with the %s link next to it\n", wrapperName, args[0], realRunscName)
		return 1
	}
	runsc := filepath.Join(dir, realRunscName)
	ex, ok := parseExec(args[1:])
	if !ok {
		err := syscall.Exec(runsc, append([]string{runsc}, args[1:]...), os.Environ())
		fmt.Fprintf(os.Stderr, "%s: exec %s: %v\n", wrapperName, runsc, err)
		return 1
	}
	code, err := ex.run(runsc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", wrapperName, err)
		return 1
	}
	return code
}

// execCmd is a `runsc exec --console-socket` command line.
type execCmd struct {
	// args are runsc's arguments without --console-socket and --detach.
	args          []string
	consoleSocket string
	processFile   string
	pidFile       string
	detach        bool
}

// runsc's exec flags that take a value; its others are booleans. An
// unknown flag leaves the command to runsc, unchanged.
var (
	execValueFlags = []string{"cwd", "env", "user", "additional-gids", "cap", "process", "pid-file", "internal-pid-file", "console-socket", "pass-fd", "exec-fd"}
	execBoolFlags  = []string{"detach"}
)

// parseExec returns the exec command of runsc's arguments, and false for
// any other command, and for an exec that the wrapper leaves to runsc: one
// without a console socket, or a process file (its size is there), or,
// detached, a pid file (the wrapper knows the child started by it), and
// one it does not understand.
//
// runsc's global flags come first. gVisor's shim writes them as
// --name=value, but --debug (runsccmd.Runsc.args), so the first argument
// that is not a flag is the command. Exec's own flags are parsed as Go's
// flag package does: -name or --name, the value after = or as the next
// argument, up to the first argument that is not a flag (the container
// id) or "--".
func parseExec(args []string) (execCmd, bool) {
	i := slices.IndexFunc(args, func(a string) bool { return !strings.HasPrefix(a, "-") })
	if i < 0 || args[i] != "exec" {
		return execCmd{}, false
	}
	ex := execCmd{args: slices.Clone(args[:i+1])}
	rest := args[i+1:]
	for len(rest) > 0 {
		a := rest[0]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		tokens := rest[:1]
		switch {
		case slices.Contains(execBoolFlags, name):
			b := true
			if hasValue {
				var err error
				if b, err = strconv.ParseBool(value); err != nil {
					return execCmd{}, false
				}
			}
			ex.detach = b
		case slices.Contains(execValueFlags, name):
			if !hasValue {
				if len(rest) < 2 {
					return execCmd{}, false
				}
				value, tokens = rest[1], rest[:2]
			}
		default:
			return execCmd{}, false
		}
		rest = rest[len(tokens):]
		switch name {
		case "console-socket":
			ex.consoleSocket = value
		case "process":
			ex.processFile = value
		case "pid-file":
			ex.pidFile = value
		}
		if name != "console-socket" && name != "detach" {
			ex.args = append(ex.args, tokens...)
		}
	}
	ex.args = append(ex.args, rest...)
	if ex.consoleSocket == "" || ex.processFile == "" || (ex.detach && ex.pidFile == "") {
		return execCmd{}, false
	}
	return ex, true
}

// run runs the exec on a pty of the process's console size, whose master
// goes to the console socket, and returns runsc's exit code.
func (ex execCmd) run(runsc string) (int, error) {
	size, err := consoleSize(ex.processFile)
	if err != nil {
		return 0, err
	}
	replica, err := sendPty(ex.consoleSocket, size)
	if err != nil {
		return 0, err
	}
	defer replica.Close()

	cmd := exec.Command(runsc, ex.args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = replica, replica, replica
	// A session of its own with the pty as its terminal, as runsc's own
	// detached child has: it gets the terminal's SIGWINCH, and forwards it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", runsc, err)
	}
	if !ex.detach {
		err := cmd.Wait()
		if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return 128 + int(ws.Signal()), nil
			}
			return exit.ExitCode(), nil
		}
		return 0, err
	}
	if err := waitPidFile(ex.pidFile, cmd.Process.Pid, pidFileTimeout); err != nil {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		return 0, err
	}
	// The child is left unreaped: once the wrapper exits, the shim, its
	// subreaper, reaps it and reports the exec's exit.
	return 0, nil
}

// consoleSize is the console size in the OCI process file, nil if none.
func consoleSize(processFile string) (*specs.Box, error) {
	b, err := os.ReadFile(processFile)
	if err != nil {
		return nil, err
	}
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("parse process file %s: %w", processFile, err)
	}
	return p.ConsoleSize, nil
}

// sendPty creates a pty of the given size (none if nil), sends its master
// over the console socket as runsc does (runsc/console.NewWithSocket: one
// message "pty-master" with the fd), and returns the replica.
func sendPty(socket string, size *specs.Box) (*os.File, error) {
	master, replicaPath, err := console.NewPty()
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	defer master.Close()
	if size != nil {
		if err := master.Resize(console.WinSize{Height: uint16(size.Height), Width: uint16(size.Width)}); err != nil {
			return nil, fmt.Errorf("resize pty: %w", err)
		}
	}
	replica, err := os.OpenFile(replicaPath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open pty replica: %w", err)
	}
	if err := sendFd(socket, "pty-master", master.Fd()); err != nil {
		replica.Close()
		return nil, err
	}
	return replica, nil
}

func sendFd(socket, name string, fd uintptr) error {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("dial console socket: %w", err)
	}
	defer conn.Close()
	if _, _, err := conn.WriteMsgUnix([]byte(name), unix.UnixRights(int(fd)), nil); err != nil {
		return fmt.Errorf("send pty master over %s: %w", socket, err)
	}
	return nil
}

// waitPidFile waits until runsc's exec child pid wrote its pid to file,
// which it does once the process runs (after it read the process file,
// which the shim removes when the wrapper returns), or exited.
func waitPidFile(file string, pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
			return nil
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// Only a child that has exited is reaped here: one that runs is
		// left to the shim.
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil {
			return fmt.Errorf("wait for runsc exec: %w", err)
		} else if got == pid {
			return fmt.Errorf("runsc exec exited (status %d) before it started the process; its error went to the terminal and runsc's log", ws.ExitStatus())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("runsc exec wrote no pid file %s in %s", file, timeout)
		}
		time.Sleep(delay)
	}
}
