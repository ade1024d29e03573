package runtime_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/testenv"
)

// newSandboxedEnv is newEnv with a Runtime under sandboxed isolation.
func newSandboxedEnv(t *testing.T) *env {
	t.Helper()
	runsc := testenv.RequireRunsc(t)
	shim := testenv.BuildRunscShim(t)
	// The first TempDir registers the removal of every temp dir, which
	// then runs after the cleanups below: after containerd's purge, this
	// unmounts what runsc keeps mounted in its root should the test have
	// left sandboxes (Close unmounts it only when none are left).
	_ = t.TempDir()
	var stateDir string
	t.Cleanup(func() {
		mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(stateDir))
		for _, m := range mounts {
			if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", m.Mountpoint, err)
			}
		}
	})
	e := newEnv(t)
	stateDir = e.opts.StateDir
	e.opts.Isolation = runtime.IsolationSandboxed
	e.opts.RunscPath = runsc
	e.opts.ShimPath = shim
	if os.Getenv("BERTH_RUNSC_DEBUG") == "1" {
		e.opts.RunscDebugDir = t.TempDir()
		t.Logf("runsc debug logs in %s", e.opts.RunscDebugDir)
	}
	e.rt = e.newRuntime(t)
	return e
}

// execOut runs args in container id and returns its exit code and output.
func execOut(t *testing.T, rt *runtime.Runtime, id string, args ...string) (uint32, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	code, err := rt.Exec(ctx, id, runtime.ExecSpec{ID: "x" + randHex(t, 4), Args: args, Output: &out})
	if err != nil {
		t.Fatalf("exec %v in %s: %v", args, id, err)
	}
	return code, strings.ReplaceAll(out.String(), "\r\n", "\n")
}

// sandboxPid returns the pid of the one runsc sandbox process of e.
func sandboxPid(t *testing.T, e *env) int {
	t.Helper()
	var pids []int
	for _, p := range processesMentioning(e.opts.StateDir) {
		if strings.Contains(p, "runsc-sandbox") {
			var pid int
			if _, err := fmt.Sscanf(p, "/proc/%d/cmdline", &pid); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) != 1 {
		t.Fatalf("runsc sandbox processes: %v, want one", pids)
	}
	return pids[0]
}

// processesMentioning lists the host processes whose command line
// contains s.
func processesMentioning(s string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		out = append(out, p+": "+string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
	}
	return out
}

func TestRuntime_Sandboxed(t *testing.T) {
	e := newSandboxedEnv(t)
	ctx := context.Background()
	net := newNetwork(t)
	group := "g" + randHex(t, 8)
	att, err := net.Setup(ctx, group)
	if err != nil {
		t.Fatalf("network Setup: %v", err)
	}
	// Before the network's teardown, should the test stop early: the
	// sandbox holds the namespace's address.
	removed := false // by the last subtest, which closes the runtime
	t.Cleanup(func() {
		if removed {
			return
		}
		if err := e.rt.RemoveSandbox(ctx, group); err != nil {
			t.Errorf("RemoveSandbox: %v", err)
		}
	})
	if got := e.rt.Describe(); got != "isolation: sandboxed (gVisor, systrap)" {
		t.Errorf("Describe = %q", got)
	}

	member := func(name, script string) runtime.ContainerSpec {
		s := e.spec(t, script)
		s.ID = group + "-" + name
		s.NetNSPath = att.NetNSPath
		s.ShimGroup = group
		s.GroupCPU = 1
		s.GroupMemoryBytes = 128 << 20
		s.Labels = map[string]string{runtime.LabelGroupUID: group, runtime.LabelContainer: name}
		return s
	}
	web := member("web", `mkdir -p /www && echo "hello from $(hostname)" >/www/index.html && echo web-up && echo web-err >&2 && exec httpd -f -p 8080 -h /www`)
	side := member("side", `echo side-up; exec sleep 3600`)
	for _, s := range []runtime.ContainerSpec{web, side} {
		if err := e.rt.Create(ctx, s); err != nil {
			t.Fatalf("Create %s: %v", s.ID, err)
		}
		if err := e.rt.Start(ctx, s.ID); err != nil {
			t.Fatalf("Start %s: %v", s.ID, err)
		}
	}

	rctx, cl := e.raw(t)
	t.Run("both containers run in one sandbox, which List hides", func(t *testing.T) {
		infos, err := e.rt.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{web.ID, side.ID} {
			if i, ok := find(infos, id); !ok || i.Status != runtime.StatusRunning {
				t.Errorf("%s: got %+v, %v; want running", id, i, ok)
			}
		}
		if len(infos) != 2 {
			t.Errorf("List returned %d containers, want 2 (no sandbox)", len(infos))
		}
		sbs, err := e.rt.Sandboxes(ctx)
		if err != nil || len(sbs) != 1 || sbs[0] != group {
			t.Errorf("Sandboxes = %v, %v; want [%s]", sbs, err, group)
		}
		for _, id := range []string{web.ID, side.ID, "sandbox-" + group} {
			c, err := cl.LoadContainer(rctx, id)
			if err != nil {
				t.Fatalf("LoadContainer %s: %v", id, err)
			}
			info, _ := c.Info(rctx)
			if info.Runtime.Name != "io.containerd.runsc.v1" {
				t.Errorf("%s runtime = %s", id, info.Runtime.Name)
			}
		}
		// One sandbox process for the group: runsc's sandbox is started
		// with "boot"; its subcontainers get gofers, not sandboxes.
		var boots []string
		for _, p := range processesMentioning(e.opts.StateDir) {
			if strings.Contains(p, "runsc-sandbox") {
				boots = append(boots, p)
			}
		}
		if len(boots) != 1 {
			t.Errorf("runsc sandbox processes: %d, want 1:\n%s", len(boots), strings.Join(boots, "\n"))
		}
	})

	t.Run("containers reach each other on localhost", func(t *testing.T) {
		var out string
		ok := eventually(10*time.Second, func() bool {
			_, out = execOut(t, e.rt, side.ID, "wget", "-qO-", "http://127.0.0.1:8080/")
			return strings.Contains(out, "hello from")
		})
		if !ok {
			t.Errorf("wget from side: %q", out)
		}
	})

	t.Run("the group is reachable from the host on its IP", func(t *testing.T) {
		out, err := exec.Command("wget", "-qO-", "-T", "5", "http://"+att.IP+":8080/").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "hello from") {
			// busybox wget may be missing on the host; curl is installed by setup.sh.
			out, err = exec.Command("curl", "-sS", "-m", "5", "http://"+att.IP+":8080/").CombinedOutput()
		}
		if err != nil || !strings.Contains(string(out), "hello from") {
			t.Errorf("GET %s:8080 from the host: %v: %s", att.IP, err, out)
		}
	})

	t.Run("the kernel is gVisor's, not the host's", func(t *testing.T) {
		host, err := os.ReadFile("/proc/sys/kernel/osrelease")
		if err != nil {
			t.Fatal(err)
		}
		code, out := execOut(t, e.rt, side.ID, "uname", "-r")
		if code != 0 || strings.TrimSpace(out) == "" || strings.TrimSpace(out) == strings.TrimSpace(string(host)) {
			t.Errorf("uname -r in the sandbox = %d %q; host %q", code, out, host)
		}
		code, out = execOut(t, e.rt, side.ID, "dmesg")
		if code != 0 || !strings.Contains(out, "gVisor") {
			t.Errorf("dmesg in the sandbox = %d %q; want gVisor's boot messages", code, out)
		}
	})

	t.Run("exec reports exit codes", func(t *testing.T) {
		code, out := execOut(t, e.rt, side.ID, "sh", "-c", "echo out; exit 7")
		if code != 7 || !strings.Contains(out, "out") {
			t.Errorf("got %d %q, want 7 and the output", code, out)
		}
	})

	t.Run("an exec's terminal has its size when the process starts", func(t *testing.T) {
		// Through containerd, without the resize after the start that
		// Runtime.Exec also sends: runsc itself ignores the size in the
		// process spec; the shim's runsc wrapper applies it (issue 7).
		task, proc := taskAndProcess(rctx, t, cl, side.ID)
		proc.Args, proc.Terminal = []string{"stty", "size"}, true
		proc.ConsoleSize = &specs.Box{Height: 30, Width: 100}
		var out bytes.Buffer
		p, err := task.Exec(rctx, "tty"+randHex(t, 4), &proc, cio.NewCreator(cio.WithStreams(nil, &out, nil), cio.WithTerminal, cio.WithFIFODir(t.TempDir())))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Delete(rctx, client.WithProcessKill)
		exited, err := p.Wait(rctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(rctx); err != nil {
			t.Fatal(err)
		}
		select {
		case st := <-exited:
			p.IO().Wait()
			if st.ExitCode() != 0 || !strings.Contains(out.String(), "30 100") {
				t.Errorf("stty size = %d %q, want 0 and 30 100", st.ExitCode(), out.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("stty size did not exit")
		}
	})

	t.Run("a resize reaches an exec's process", func(t *testing.T) {
		// The terminal's SIGWINCH goes to runsc's exec process, which
		// forwards it into the sandbox: it must be the session leader
		// on the terminal, as the wrapper starts it.
		task, proc := taskAndProcess(rctx, t, cl, side.ID)
		proc.Args, proc.Terminal = []string{"sh", "-c", `trap 'stty size; exit 0' WINCH; echo ready; i=0; while [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; exit 9`}, true
		proc.ConsoleSize = &specs.Box{Height: 30, Width: 100}
		pr, pw := io.Pipe()
		p, err := task.Exec(rctx, "tty"+randHex(t, 4), &proc, cio.NewCreator(cio.WithStreams(nil, pw, nil), cio.WithTerminal, cio.WithFIFODir(t.TempDir())))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Delete(rctx, client.WithProcessKill)
		defer pr.Close() // first: Delete waits for the output's copy
		exited, err := p.Wait(rctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(rctx); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 16)
		go func() {
			defer close(lines)
			for sc := bufio.NewScanner(pr); sc.Scan(); {
				lines <- strings.TrimSpace(sc.Text())
			}
		}()
		next := func() string {
			select {
			case l, ok := <-lines:
				if !ok {
					return "(end of output)"
				}
				return l
			case <-time.After(30 * time.Second):
				return "(nothing in 30s)"
			}
		}
		if l := next(); l != "ready" {
			t.Fatalf("first line %q, want ready", l)
		}
		if err := p.Resize(rctx, 120, 40); err != nil {
			t.Fatal(err)
		}
		if l := next(); l != "40 120" {
			t.Errorf("after the resize the process printed %q, want 40 120", l)
		}
		select {
		case st := <-exited:
			if st.ExitCode() != 0 {
				t.Errorf("exit code %d, want 0 (from the WINCH trap)", st.ExitCode())
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the process did not exit")
		}
	})

	t.Run("logs land in the log files", func(t *testing.T) {
		ok := eventually(5*time.Second, func() bool {
			l := readFile(t, web.LogPath)
			return strings.Contains(l, "web-up") && strings.Contains(l, "web-err")
		})
		if !ok {
			t.Errorf("web log = %q", readFile(t, web.LogPath))
		}
	})

	t.Run("a job container's exit code is reported", func(t *testing.T) {
		job := member("job", "echo job; exit 3")
		if err := e.rt.Create(ctx, job); err != nil {
			t.Fatalf("Create: %v", err)
		}
		ch, err := e.rt.Wait(ctx, job.ID)
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if err := e.rt.Start(ctx, job.ID); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if ex := waitExit(t, ch, 30*time.Second); ex.Code != 3 {
			t.Errorf("exit code %d, want 3", ex.Code)
		}
		i, err := e.rt.Get(ctx, job.ID)
		if err != nil || i.Status != runtime.StatusStopped || i.ExitCode != 3 {
			t.Errorf("Get = %+v, %v", i, err)
		}
		if err := e.rt.Remove(ctx, job.ID, time.Second); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})

	t.Run("an id that another in the sandbox starts with is refused", func(t *testing.T) {
		// runsc matches ids by prefix (the agent's ids end in "_s" for it).
		for _, name := range []string{"we", "web-2"} {
			c := member(name, "exit 0")
			if err := e.rt.Create(ctx, c); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Create %s next to %s: %v, want invalid argument", c.ID, web.ID, err)
				_ = e.rt.Remove(ctx, c.ID, 0)
			}
		}
	})

	t.Run("a created, never started container is removed", func(t *testing.T) {
		c := member("created", "exit 0")
		if err := e.rt.Create(ctx, c); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if err := e.rt.Remove(ctx, c.ID, time.Second); err != nil {
			t.Errorf("Remove: %v", err)
		}
		if _, err := e.rt.Get(ctx, c.ID); !errdefs.IsNotFound(err) {
			t.Errorf("Get after Remove: %v, want not found", err)
		}
	})

	t.Run("a stopped container reports SIGTERM's code and the sandbox stays", func(t *testing.T) {
		ch, err := e.rt.Wait(ctx, side.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.rt.Remove(ctx, side.ID, 10*time.Second); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if ex := waitExit(t, ch, 5*time.Second); ex.Code != 143 {
			t.Errorf("exit code %d, want 143", ex.Code)
		}
		if i, err := e.rt.Get(ctx, web.ID); err != nil || i.Status != runtime.StatusRunning {
			t.Errorf("web after removing side: %+v, %v", i, err)
		}
	})

	t.Run("the sandbox's cgroup holds the group's limits plus the overhead", func(t *testing.T) {
		cg := e.opts.CgroupParent + "/sandbox-" + group
		mem := strings.TrimSpace(readFile(t, "/sys/fs/cgroup/memory"+cg+"/memory.limit_in_bytes"))
		if want := fmt.Sprint(128<<20 + runtime.SandboxOverheadBytes); mem != want {
			t.Errorf("memory limit %q, want %s", mem, want)
		}
		if quota := strings.TrimSpace(readFile(t, "/sys/fs/cgroup/cpu"+cg+"/cpu.cfs_quota_us")); quota != "100000" {
			t.Errorf("CFS quota %q, want 100000 (1 CPU)", quota)
		}
	})

	t.Run("a sandbox that died is replaced on the same network", func(t *testing.T) {
		old := sandboxPid(t, e)
		exited, err := e.rt.Wait(ctx, web.ID)
		if err != nil {
			t.Fatal(err)
		}
		// The sandbox process was started by this test's runtime. The
		// next Create comes at once, while containerd may still report
		// the sandbox running.
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill sandbox %d: %v", old, err)
		}
		again := member("again", `mkdir -p /www && echo "hello again" >/www/index.html && exec httpd -f -p 8080 -h /www`)
		if err := e.rt.Create(ctx, again); err != nil {
			t.Fatalf("Create in a new sandbox: %v", err)
		}
		ex := waitExit(t, exited, 30*time.Second)
		if ex.Code != 128 {
			t.Errorf("web exited with %d when its sandbox died, want runsc's 128", ex.Code)
		}
		if i, err := e.rt.Get(ctx, web.ID); err != nil || i.OOMKilled {
			t.Errorf("web: %+v, %v; a killed sandbox is no OOM kill", i, err)
		}
		if err := e.rt.Remove(ctx, web.ID, time.Second); err != nil {
			t.Fatalf("Remove web: %v", err)
		}
		if err := e.rt.Start(ctx, again.ID); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if pid := sandboxPid(t, e); pid == old {
			t.Errorf("sandbox pid %d unchanged", pid)
		}
		var out []byte
		ok := eventually(10*time.Second, func() bool {
			out, _ = exec.Command("curl", "-sS", "-m", "2", "http://"+att.IP+":8080/").CombinedOutput()
			return strings.Contains(string(out), "hello again")
		})
		if !ok {
			t.Errorf("GET %s:8080 from the host: %s", att.IP, out)
		}
	})

	t.Run("RemoveSandbox removes the rest and leaves nothing behind", func(t *testing.T) {
		if err := e.rt.RemoveSandbox(ctx, group); err != nil {
			t.Fatalf("RemoveSandbox: %v", err)
		}
		removed = true
		if err := e.rt.RemoveSandbox(ctx, group); err != nil {
			t.Errorf("RemoveSandbox again: %v", err)
		}
		ctrs, err := cl.Containers(rctx)
		if err != nil || len(ctrs) != 0 {
			t.Errorf("containers left: %d, %v", len(ctrs), err)
		}
		var snaps []string
		_ = cl.SnapshotService(runtime.DefaultSnapshotter).Walk(rctx, func(_ context.Context, i snapshots.Info) error {
			if i.Kind == snapshots.KindActive {
				snaps = append(snaps, i.Name)
			}
			return nil
		})
		if len(snaps) != 0 {
			t.Errorf("active snapshots left: %v", snaps)
		}
		if sbs, err := e.rt.Sandboxes(ctx); err != nil || len(sbs) != 0 {
			t.Errorf("Sandboxes = %v, %v; want none", sbs, err)
		}
		// The sandbox gave the namespace its address back, so CNI's DEL
		// removes every rule its ADD made (the bridge plugin's masquerade
		// rule is found through that address).
		if err := net.Teardown(ctx, group); err != nil {
			t.Errorf("network Teardown: %v", err)
		}
		nat, err := exec.Command("iptables-save", "-t", "nat").Output()
		if err != nil {
			t.Fatalf("iptables-save: %v", err)
		}
		for _, l := range strings.Split(string(nat), "\n") {
			if strings.Contains(l, `id: \"`+group+`\"`) {
				t.Errorf("NAT rule left: %s", l)
			}
		}
		ok := eventually(10*time.Second, func() bool {
			return len(processesMentioning(e.ctd.Address)) == 0 && len(processesMentioning(e.opts.StateDir)) == 0
		})
		// Close releases runsc's mount once no sandbox is left.
		if err := e.rt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(e.opts.StateDir)); len(mounts) != 0 {
			t.Errorf("mounts left under the state dir: %v", mounts[0].Mountpoint)
		}
		if !ok {
			t.Errorf("processes left:\n%s\n%s", strings.Join(processesMentioning(e.ctd.Address), "\n"), strings.Join(processesMentioning(e.opts.StateDir), "\n"))
		}
	})
}

// TestRuntime_SandboxedMemoryLimit: the host enforces the group's memory on
// the sandbox. Under systrap every application address space is a host
// process in the sandbox's cgroup, so the OOM killer takes the workload
// that overran, as under runc, and the sandbox and the other containers
// live on.
func TestRuntime_SandboxedMemoryLimit(t *testing.T) {
	e := newSandboxedEnv(t)
	ctx := context.Background()
	net := newNetwork(t)
	group := "g" + randHex(t, 8)
	att, err := net.Setup(ctx, group)
	if err != nil {
		t.Fatalf("network Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := e.rt.RemoveSandbox(ctx, group); err != nil {
			t.Errorf("RemoveSandbox: %v", err)
		}
	})
	member := func(name, script string) runtime.ContainerSpec {
		s := e.spec(t, script)
		s.ID = group + "-" + name
		s.NetNSPath = att.NetNSPath
		s.ShimGroup = group
		s.GroupMemoryBytes = 64 << 20
		s.MemoryBytes = 64 << 20
		return s
	}
	idle := member("idle", "exec sleep 3600")
	// Doubles a shell string until memory runs out (bounded: 2^40 bytes
	// is far beyond any host).
	hog := member("hog", `x=a; i=0; while [ $i -lt 40 ]; do x=$x$x; i=$((i+1)); done`)
	exits := map[string]<-chan runtime.Exit{}
	for _, s := range []runtime.ContainerSpec{idle, hog} {
		if err := e.rt.Create(ctx, s); err != nil {
			t.Fatalf("Create %s: %v", s.ID, err)
		}
		if exits[s.ID], err = e.rt.Wait(ctx, s.ID); err != nil {
			t.Fatalf("Wait %s: %v", s.ID, err)
		}
		if err := e.rt.Start(ctx, s.ID); err != nil {
			t.Fatalf("Start %s: %v", s.ID, err)
		}
	}
	ex := waitExit(t, exits[hog.ID], time.Minute)
	oom := readFile(t, "/sys/fs/cgroup/memory"+e.opts.CgroupParent+"/sandbox-"+group+"/memory.oom_control")
	if !strings.Contains(oom, "oom_kill ") || strings.Contains(oom, "oom_kill 0") {
		t.Errorf("the sandbox's cgroup saw no OOM kill:\n%s", oom)
	}
	if i, err := e.rt.Get(ctx, hog.ID); err != nil || !i.OOMKilled || i.ExitCode != 137 {
		t.Errorf("hog: %+v, %v; want OOMKilled with 137", i, err)
	}
	// The kernel picks the biggest process of the cgroup: mostly the
	// hog's, sometimes the sandbox's, which takes the whole group.
	idleInfo, err := e.rt.Get(ctx, idle.ID)
	if err != nil {
		t.Fatal(err)
	}
	switch ex.Code {
	case 137:
		if idleInfo.Status != runtime.StatusRunning {
			t.Errorf("idle after the hog's OOM kill: %+v; want running", idleInfo)
		}
	case 128:
		t.Logf("the OOM killer took the sandbox")
		if !eventually(10*time.Second, func() bool {
			i, err := e.rt.Get(ctx, idle.ID)
			idleInfo = i
			return err == nil && i.Status == runtime.StatusStopped
		}) || !idleInfo.OOMKilled || idleInfo.ExitCode != 137 {
			t.Errorf("idle after the sandbox's OOM kill: %+v; want OOMKilled with 137", idleInfo)
		}
	default:
		t.Errorf("hog exited with %d, want 137 or 128", ex.Code)
	}

	// A SIGKILL that is not the OOM killer's, after the group's OOM kill.
	quitter := member("quitter", `kill -9 $$`)
	if err := e.rt.Create(ctx, quitter); err != nil {
		t.Fatalf("Create: %v", err)
	}
	ch, err := e.rt.Wait(ctx, quitter.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(ctx, quitter.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if ex := waitExit(t, ch, 30*time.Second); ex.Code != 137 {
		t.Errorf("quitter exited with %d, want 137", ex.Code)
	}
	infos, err := e.rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i, ok := find(infos, quitter.ID); !ok || i.OOMKilled {
		t.Errorf("quitter: %+v; want not OOMKilled", i)
	}
	if i, ok := find(infos, hog.ID); !ok || !i.OOMKilled {
		t.Errorf("hog in List: %+v; want OOMKilled", i)
	}
}

func TestNew_SandboxedOptions(t *testing.T) {
	ctx := context.Background()
	exe := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sandboxed := func(mod func(*runtime.Options)) runtime.Options {
		o := runtime.Options{Address: "/run/x.sock", StateDir: t.TempDir(), Isolation: runtime.IsolationSandboxed, RunscPath: exe, ShimPath: exe}
		mod(&o)
		return o
	}
	for _, tt := range []struct {
		name string
		opts runtime.Options
		want func(error) bool
	}{
		{"an unknown isolation is invalid", runtime.Options{Address: "/run/x.sock", StateDir: t.TempDir(), Isolation: "vm"}, errdefs.IsInvalidArgument},
		{"the kvm platform is invalid", sandboxed(func(o *runtime.Options) { o.RunscPlatform = "kvm" }), errdefs.IsInvalidArgument},
		{"a missing runsc is a failed precondition", sandboxed(func(o *runtime.Options) { o.RunscPath = "/nonexistent/runsc" }), errdefs.IsFailedPrecondition},
		{"a shim that is not executable is a failed precondition", sandboxed(func(o *runtime.Options) { o.ShimPath = plain }), errdefs.IsFailedPrecondition},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := runtime.New(ctx, tt.opts); !tt.want(err) {
				t.Errorf("got %v", err)
			}
		})
	}
}

// taskAndProcess loads a container's task and a copy of its process spec,
// to exec with through containerd directly.
func taskAndProcess(ctx context.Context, t *testing.T, cl *client.Client, id string) (client.Task, specs.Process) {
	t.Helper()
	c, err := cl.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return task, *spec.Process
}
