package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	containerdshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/sys"
	"golang.org/x/sys/unix"
	gvshim "gvisor.dev/gvisor/pkg/shim/v1"
)

// oomScore is the score the shim daemon asks for, as gVisor's manager
// does, so that the kernel kills workloads before their shim.
const oomScore = -999

// addressFile is the file in the bundle that holds the shim's socket
// address; gVisor's task service reads it to remove the socket on
// shutdown.
const addressFile = "address"

// manager is gVisor's shim manager with Start replaced; Stop (the
// "delete" action, which force-deletes the runsc container) and Info are
// gVisor's.
type manager struct {
	containerdshim.Manager
}

func newManager(name string) *manager {
	return &manager{Manager: gvshim.NewShimManager(name)}
}

// Start starts the shim daemon for container id: one daemon per container,
// serving a socket whose address is derived from containerd's address and
// the id. It follows gVisor's manager except that a refused oom_score_adj
// is not an error.
func (m *manager) Start(ctx context.Context, id string, opts containerdshim.StartOpts) (_ containerdshim.BootstrapParams, retErr error) {
	params := func(addr string) containerdshim.BootstrapParams {
		return containerdshim.BootstrapParams{Version: 2, Address: addr, Protocol: "ttrpc"}
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return containerdshim.BootstrapParams{}, err
	}
	addr, err := containerdshim.SocketAddress(ctx, opts.Address, id, opts.Debug)
	if err != nil {
		return containerdshim.BootstrapParams{}, err
	}
	socket, err := containerdshim.NewSocket(addr)
	if err != nil {
		if !containerdshim.SocketEaddrinuse(err) {
			return containerdshim.BootstrapParams{}, fmt.Errorf("create shim socket: %w", err)
		}
		// A daemon for this id serves already (containerd retried), or a
		// dead one left its socket.
		if containerdshim.CanConnect(addr) {
			if err := os.WriteFile(addressFile, []byte(addr), 0o644); err != nil {
				return containerdshim.BootstrapParams{}, fmt.Errorf("write shim address: %w", err)
			}
			return params(addr), nil
		}
		if err := containerdshim.RemoveSocket(addr); err != nil {
			return containerdshim.BootstrapParams{}, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if socket, err = containerdshim.NewSocket(addr); err != nil {
			return containerdshim.BootstrapParams{}, fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			_ = containerdshim.RemoveSocket(addr)
		}
	}()
	if err := os.WriteFile(addressFile, []byte(addr), 0o644); err != nil {
		return containerdshim.BootstrapParams{}, fmt.Errorf("write shim address: %w", err)
	}
	f, err := socket.File()
	if err != nil {
		return containerdshim.BootstrapParams{}, err
	}
	defer f.Close()

	cmd, err := daemonCommand(ns, opts.Address, id, opts.Debug)
	if err != nil {
		return containerdshim.BootstrapParams{}, err
	}
	// The daemon serves the listener it inherits as fd 3.
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		return containerdshim.BootstrapParams{}, fmt.Errorf("start shim daemon: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
		}
	}()
	// Reaps the daemon should it exit while this process still runs.
	go func() { _ = cmd.Wait() }()
	if err := containerdshim.WritePidFile("shim.pid", cmd.Process.Pid); err != nil {
		return containerdshim.BootstrapParams{}, err
	}
	// Needs CAP_SYS_RESOURCE, which not every host grants root; the shim
	// works without it. Nothing may be printed here: containerd reads this
	// process's output as the reply.
	_ = sys.SetOOMScore(cmd.Process.Pid, oomScore)
	return params(addr), nil
}

// daemonCommand is the shim daemon: this binary without an action, in its
// own process group so that signals to containerd do not reach it.
func daemonCommand(ns, containerdAddress, id string, debug bool) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-address", containerdAddress, "-id", id}
	if debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// bareAddress returns the address in a bootstrap reply, which is either
// JSON (containerd's shim package) or already a bare address.
func bareAddress(reply []byte) (string, error) {
	reply = bytes.TrimSpace(reply)
	if len(reply) == 0 {
		return "", errors.New("empty bootstrap reply")
	}
	if reply[0] != '{' {
		return string(reply), nil
	}
	var p containerdshim.BootstrapParams
	if err := json.Unmarshal(reply, &p); err != nil {
		return "", fmt.Errorf("parse bootstrap reply %q: %w", reply, err)
	}
	if p.Address == "" {
		return "", fmt.Errorf("bootstrap reply %q has no address", reply)
	}
	if p.Protocol != "" && !strings.EqualFold(p.Protocol, "ttrpc") {
		return "", fmt.Errorf("bootstrap reply %q: protocol %s is not ttrpc", reply, p.Protocol)
	}
	return p.Address, nil
}

func readAll(r io.ReadCloser) ([]byte, error) {
	defer r.Close()
	return io.ReadAll(r)
}
