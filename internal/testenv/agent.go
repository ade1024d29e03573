package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// AgentOptions configures StartAgent.
type AgentOptions struct {
	// Node is the namespace the agent runs in; its address is the agent's
	// --advertise-address (required).
	Node *Node
	// Containerd is the node's own daemon, started with
	// StartContainerdIn(t, Node.NetNSPath) (required).
	Containerd *Containerd
	// Server gives the defaults of Servers (its endpoint) and CAFile; a
	// server the nodes reach listens on the infra bridge
	// (ServerOptions.ListenHost).
	Server *Server
	// Servers are the API URLs (--server); default Server's endpoint.
	Servers []string
	// CAFile is the CA the agent trusts the servers with; default
	// Server's.
	CAFile string
	// JoinToken is --join-token (required).
	JoinToken string
	// NodeName is --node-name; default Node.Name.
	NodeName string
	// Zone is --zone, when set.
	Zone string
	// Listen is the node server's address (--listen); empty leaves the
	// agent's default, the advertise address's port 10250.
	Listen string
	// Isolation is --isolation; empty means DefaultIsolation().
	// "sandboxed" also passes runsc (RequireRunsc) and Berth's gVisor
	// shim (BuildRunscShim).
	Isolation string
	// InsecureRegistries are passed as --insecure-registry.
	InsecureRegistries []string
	// CNIPluginDir, RunscPlatform and UserNSRemap are their flags, when
	// set.
	CNIPluginDir  string
	RunscPlatform string
	UserNSRemap   string
	// CPU and MemoryGB, when set, override the allocatable resources the
	// agent reports (--cpu, --memory-gb): every agent on one machine
	// would report the whole machine.
	CPU      float64
	MemoryGB float64
	// LogLevel is --log-level; default "debug".
	LogLevel string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
	// DataDir, when set, is used instead of a fresh directory (and not
	// removed at the end).
	DataDir string
	// SkipReadyWait returns from StartAgent (and Restart) as soon as the
	// process runs, instead of when the node server answers: for agents
	// expected to fail (see WaitExit).
	SkipReadyWait bool
	// Binary is the executable run as `BINARY agent ...`; default
	// BuildBerth's.
	Binary string
}

// Agent is a `berth agent` child process in a node's network namespace,
// with its own data dir, cgroup parent and bridge.
type Agent struct {
	Node     *Node
	NodeName string
	DataDir  string
	// CgroupParent is "/berth-<infra bridge>-<node name>", unique on the
	// host; Bridge is the agent's group bridge ("bn" + 6 hex digits),
	// which lives in the node's namespace.
	CgroupParent string
	Bridge       string
	// Listen is where its node server answers, in the node's namespace
	// (reached from the root namespace too, over the infra bridge).
	Listen string

	opts    AgentOptions
	binary  string
	logPath string
	starts  int
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd exited
}

// agentReadyTimeout bounds how long StartAgent waits for the node server.
const agentReadyTimeout = 60 * time.Second

// StartAgent starts `berth agent` in opts.Node's network namespace (with
// nsenter --net only: it shares the host's mount namespace with
// containerd and the shims) and waits up to 60s for its node server to
// accept connections. Start it after its containerd and server: the
// cleanup, which runs first, stops the agent, kills what it left in its
// containerd, unmounts what it left under its data and runtime state
// dirs, and removes its cgroups.
func StartAgent(t testing.TB, opts AgentOptions) *Agent {
	t.Helper()
	RequireRoot(t)
	RequireBinary(t, "nsenter")
	if opts.Node == nil || opts.Containerd == nil {
		t.Fatal("StartAgent: AgentOptions.Node and Containerd are required")
	}
	if opts.JoinToken == "" {
		t.Fatal("StartAgent: AgentOptions.JoinToken is required")
	}
	if len(opts.Servers) == 0 && opts.Server != nil {
		opts.Servers = []string{opts.Server.Client.Endpoint}
	}
	if opts.CAFile == "" && opts.Server != nil {
		opts.CAFile = opts.Server.Client.CAFile
	}
	if len(opts.Servers) == 0 || opts.CAFile == "" {
		t.Fatal("StartAgent: AgentOptions needs Servers and CAFile, or Server")
	}
	if opts.NodeName == "" {
		opts.NodeName = opts.Node.Name
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.Isolation == "" {
		opts.Isolation = DefaultIsolation()
	}
	a := &Agent{
		Node:         opts.Node,
		NodeName:     opts.NodeName,
		CgroupParent: agentCgroupParent(opts.Node, opts.NodeName),
		Listen:       opts.Listen,
		opts:         opts,
		binary:       opts.Binary,
	}
	if a.Listen == "" {
		a.Listen = net.JoinHostPort(opts.Node.Addr.String(), "10250")
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	a.Bridge = "bn" + hex.EncodeToString(b)
	if a.binary == "" {
		a.binary = BuildBerth(t)
	}
	ownDataDir := opts.DataDir == ""
	if ownDataDir {
		// Short: the agent puts unix sockets below it.
		a.DataDir = shortTempDir(t, "bagt-")
	} else {
		a.DataDir = opts.DataDir
	}
	a.logPath = filepath.Join(t.TempDir(), "berth-agent-"+sanitize(opts.NodeName)+".log")

	dumpLogOnFailure(t, "berth agent "+opts.NodeName, a.logPath)
	t.Cleanup(func() { a.cleanup(t, ownDataDir) })
	a.start(t)
	return a
}

// agentCgroupParent is unique on the host: the infra bridge's name is.
func agentCgroupParent(node *Node, nodeName string) string {
	prefix := "berth-"
	if node.network != nil {
		prefix += node.network.Bridge + "-"
	}
	return "/" + prefix + sanitize(nodeName)
}

// args is the agent's command line, after the binary.
func (a *Agent) args(t testing.TB) []string {
	o := a.opts
	args := []string{"agent",
		"--server", strings.Join(o.Servers, ","),
		"--join-token", o.JoinToken,
		"--ca-file", o.CAFile,
		"--data-dir", a.DataDir,
		"--containerd-address", o.Containerd.Address,
		"--node-name", o.NodeName,
		"--advertise-address", o.Node.Addr.String(),
		"--cgroup-parent", a.CgroupParent,
		"--bridge-name", a.Bridge,
		"--isolation", o.Isolation,
		"--log-level", o.LogLevel,
	}
	if o.Listen != "" {
		args = append(args, "--listen", o.Listen)
	}
	if o.Zone != "" {
		args = append(args, "--zone", o.Zone)
	}
	for _, r := range o.InsecureRegistries {
		args = append(args, "--insecure-registry", r)
	}
	for _, f := range []struct{ name, value string }{
		{"--cni-plugin-dir", o.CNIPluginDir},
		{"--runsc-platform", o.RunscPlatform},
		{"--userns-remap", o.UserNSRemap},
	} {
		if f.value != "" {
			args = append(args, f.name, f.value)
		}
	}
	if o.Isolation == "sandboxed" {
		args = append(args, "--runsc-path", RequireRunsc(t), "--runsc-shim", BuildRunscShim(t))
	}
	if o.CPU > 0 {
		args = append(args, "--cpu", strconv.FormatFloat(o.CPU, 'g', -1, 64))
	}
	if o.MemoryGB > 0 {
		args = append(args, "--memory-gb", strconv.FormatFloat(o.MemoryGB, 'g', -1, 64))
	}
	return append(args, o.ExtraArgs...)
}

// start runs the agent and, unless SkipReadyWait, waits for its node
// server.
func (a *Agent) start(t testing.TB) {
	t.Helper()
	a.starts++
	logFile, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open agent log: %v", err)
	}
	defer logFile.Close()
	argv := nsenterArgs(a.Node.NetNSPath, append([]string{a.binary}, a.args(t)...)...)
	fmt.Fprintf(logFile, "===== testenv: start %d: %s\n", a.starts, strings.Join(argv, " "))

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = daemonAttrs()
	if err := startDaemon(cmd); err != nil {
		t.Fatalf("start berth agent %s: %v", a.NodeName, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	a.cmd, a.done = cmd, done
	if a.opts.SkipReadyWait {
		return
	}
	if err := a.waitReady(agentReadyTimeout); err != nil {
		t.Fatalf("berth agent %s: %v (its log follows at the end)", a.NodeName, err)
	}
}

// waitReady polls the node server from the node's namespace until it
// accepts a connection, the agent exits, or timeout passes.
func (a *Agent) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		select {
		case <-a.done:
			return fmt.Errorf("exited during start-up: %v", a.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := a.Node.DialContext(ctx, "tcp", a.Listen)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("node server %s not answering after %s: %v", a.Listen, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Running reports whether the agent process runs.
func (a *Agent) Running() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits up to 30s, then SIGKILLs. An agent that
// needs the SIGKILL, exits non-zero, or had exited already fails the test.
func (a *Agent) Stop(t testing.TB) {
	t.Helper()
	if a.cmd == nil {
		return
	}
	select {
	case <-a.done:
		t.Errorf("berth agent %s had exited before Stop: %v", a.NodeName, a.cmd.ProcessState)
		a.cmd = nil
		return
	default:
	}
	start := time.Now()
	if !stopProcess(a.cmd, a.done, 30*time.Second) {
		t.Errorf("berth agent %s did not stop within 30s of SIGTERM; killed it", a.NodeName)
	} else if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("berth agent %s exited with %v after SIGTERM, want status 0", a.NodeName, a.cmd.ProcessState)
	} else {
		t.Logf("berth agent %s stopped in %s", a.NodeName, time.Since(start).Round(time.Millisecond))
	}
	a.cmd = nil
}

// Kill SIGKILLs the agent (its process group) at once and waits for it to
// go, as a node that dies would: the containers keep running.
func (a *Agent) Kill() {
	if a.cmd == nil {
		return
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.done
	a.cmd = nil
}

// WaitExit waits up to timeout for the agent to exit by itself and
// returns its exit code, failing t if it still runs.
func (a *Agent) WaitExit(t testing.TB, timeout time.Duration) int {
	t.Helper()
	if a.cmd == nil {
		t.Fatalf("berth agent %s is not running", a.NodeName)
	}
	select {
	case <-a.done:
	case <-time.After(timeout):
		t.Fatalf("berth agent %s still runs after %s", a.NodeName, timeout)
	}
	code := a.cmd.ProcessState.ExitCode()
	a.cmd = nil
	return code
}

// Restart stops the agent, if it runs, and starts it again on the same
// data dir, node and flags.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.Stop(t)
	a.start(t)
}

// LogPath is the agent's log file (all starts, appended).
func (a *Agent) LogPath() string { return a.logPath }

// Log returns the agent's log so far.
func (a *Agent) Log() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

// cleanup stops the agent and removes what it leaves on the host. Its
// containers are killed here, through its containerd, while the runc state
// the shims need still exists, so that its cgroups can go too.
func (a *Agent) cleanup(t testing.TB, ownDataDir bool) {
	if a.cmd != nil {
		select {
		case <-a.done:
			t.Errorf("berth agent %s exited before the end of the test: %v", a.NodeName, a.cmd.ProcessState)
			a.cmd = nil
		default:
			a.Stop(t)
		}
	}
	if err := a.opts.Containerd.purge(); err != nil {
		t.Errorf("kill the containers of agent %s: %v", a.NodeName, err)
	}
	state := RuntimeStateDir(a.DataDir)
	for _, dir := range []string{state, a.DataDir} {
		if err := UnmountUnder(dir); err != nil {
			t.Errorf("unmount under %s: %v", dir, err)
		}
	}
	if err := os.RemoveAll(state); err != nil {
		t.Errorf("remove %s: %v", state, err)
	}
	if err := removeCgroups(a.CgroupParent); err != nil {
		t.Errorf("remove cgroups of agent %s: %v", a.NodeName, err)
	}
	if ownDataDir {
		removeTree(t, a.DataDir)
	}
}

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// removeCgroups removes the cgroup parent in every hierarchy (each v1
// controller, the unified one, or a v2-only root) with everything below
// it, deepest first. Cgroups that still hold processes cannot go.
func removeCgroups(parent string) error {
	tops := []string{filepath.Join(cgroupRoot, parent)}
	more, err := filepath.Glob(filepath.Join(cgroupRoot, "*", parent))
	if err != nil {
		return err
	}
	tops = append(tops, more...)
	var dirs []string
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
