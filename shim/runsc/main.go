// Command containerd-shim-runsc-v1 is Berth's build of gVisor's containerd
// shim (runtime io.containerd.runsc.v1). gVisor's task service does the
// work; this main only replaces its shim manager, the part that starts the
// shim daemon, because the stock one does not fit Berth's hosts:
//
//   - it makes a failed oom_score_adj change fatal, and hosts without
//     CAP_SYS_RESOURCE cannot lower the score;
//   - it answers containerd's "start" with JSON bootstrap parameters,
//     which containerd 1.6 does not read: 1.6 dials the output as a bare
//     address. Later containerd versions read a bare address too.
//
// The binary has two more roles: run as /pause berth-pause it is the
// placeholder process of a group's sandbox, and run by a link named
// berth-runsc it wraps runsc for the shim (wrapper.go).
//
// It is a module of its own (shim/runsc/go.mod) so that gVisor's
// dependencies never enter Berth's own module.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	containerdshim "github.com/containerd/containerd/v2/pkg/shim"
	// Registers gVisor's task service as the shim's ttrpc plugin.
	_ "gvisor.dev/gvisor/pkg/shim/v1/plugin"
)

// runtimeName is the containerd runtime this shim implements.
const runtimeName = "io.containerd.runsc.v1"

func main() {
	if isWrapper(os.Args[0]) {
		os.Exit(runWrapper(os.Args))
	}
	if len(os.Args) == 2 && os.Args[1] == pauseArg {
		pause()
	}
	if !isStart(os.Args) {
		containerdshim.Run(context.Background(), newManager(runtimeName))
		return
	}
	if err := start(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v", runtimeName, err)
		os.Exit(1)
	}
}

// pauseArg makes the binary the placeholder process of a group's sandbox
// (Berth bind-mounts it into the sandbox container), so that sandboxes
// need no image.
const pauseArg = "berth-pause"

// pause sleeps until SIGTERM or SIGINT, then exits 0.
func pause() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	os.Exit(0)
}

// isStart tells whether containerd runs the shim for its "start" action,
// the last argument after the flags (shim -namespace ns -address a -id id
// start).
func isStart(args []string) bool {
	return len(args) > 1 && args[len(args)-1] == "start"
}

// start runs containerd's shim "start" with the shim's stdout captured, and
// writes the bare address of the bootstrap reply instead of its JSON.
// containerd reads stdout and stderr together, so nothing else may be
// printed.
func start() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	stdout := os.Stdout
	os.Stdout = w
	// Run exits the process on failure, after printing to stderr, which
	// containerd reports; on success it returns.
	containerdshim.Run(context.Background(), newManager(runtimeName))
	os.Stdout = stdout
	w.Close()
	reply, err := readAll(r)
	if err != nil {
		return fmt.Errorf("read bootstrap reply: %w", err)
	}
	addr, err := bareAddress(reply)
	if err != nil {
		return err
	}
	_, err = stdout.WriteString(addr)
	return err
}
