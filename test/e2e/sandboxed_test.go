package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	"github.com/gorilla/websocket"

	"github.com/berth-dev/berth/internal/testenv"
)

// newSandboxedEnv is newEnv with `berth server --isolation sandboxed`, in
// the suite's sandboxed run only: the runc run of `make test` skips the
// tests of gVisor's own behaviour.
func newSandboxedEnv(t *testing.T) *env {
	t.Helper()
	if l := testenv.DefaultIsolation(); l != "sandboxed" {
		t.Skipf("gVisor-specific: covered by the suite's sandboxed run (this run: %s=%s)", testenv.IsolationEnv, l)
	}
	return newEnvOpts(t, testenv.ServerOptions{Isolation: "sandboxed"})
}

// sandboxedGroup is a web server, a side container that fetches its page
// over localhost, and a job that exits 3, with restart policy Never. The
// side container's name starts with the server's: runsc matches container
// ids by prefix, which Berth's ids must survive.
func sandboxedGroup(hello, busybox string) armcontainerinstance.ContainerGroup {
	res := func(cpu, mem float64) *armcontainerinstance.ResourceRequirements {
		return &armcontainerinstance.ResourceRequirements{Requests: &armcontainerinstance.ResourceRequests{CPU: to.Ptr(cpu), MemoryInGB: to.Ptr(mem)}}
	}
	sh := func(script string) []*string { return []*string{to.Ptr("/bin/sh"), to.Ptr("-c"), to.Ptr(script)} }
	return armcontainerinstance.ContainerGroup{
		Location: to.Ptr("westus"),
		Properties: &armcontainerinstance.ContainerGroupPropertiesProperties{
			OSType:        to.Ptr(armcontainerinstance.OperatingSystemTypesLinux),
			RestartPolicy: to.Ptr(armcontainerinstance.ContainerGroupRestartPolicyNever),
			Containers: []*armcontainerinstance.Container{
				{Name: to.Ptr("web"), Properties: &armcontainerinstance.ContainerProperties{
					Image:     to.Ptr(hello),
					Resources: res(0.5, 0.25),
					Ports:     []*armcontainerinstance.ContainerPort{{Port: to.Ptr[int32](80)}},
				}},
				{Name: to.Ptr("web-side"), Properties: &armcontainerinstance.ContainerProperties{
					Image:     to.Ptr(busybox),
					Command:   sh(`i=0; while [ $i -lt 600 ]; do echo "$(wget -qO- http://127.0.0.1:80/ | head -n 1) via localhost"; i=$((i+1)); sleep 1; done`),
					Resources: res(0.25, 0.25),
				}},
				{Name: to.Ptr("job"), Properties: &armcontainerinstance.ContainerProperties{
					Image:     to.Ptr(busybox),
					Command:   sh(`echo job ran; exit 3`),
					Resources: res(0.25, 0.25),
				}},
			},
			IPAddress: &armcontainerinstance.IPAddress{
				Type:  to.Ptr(armcontainerinstance.ContainerGroupIPAddressTypePublic),
				Ports: []*armcontainerinstance.Port{{Port: to.Ptr[int32](80), Protocol: to.Ptr(armcontainerinstance.ContainerGroupNetworkProtocolTCP)}},
			},
		},
	}
}

// TestSandboxed runs a group under `--isolation sandboxed` (issue 7): every
// container in one gVisor sandbox, sharing its network stack, with logs,
// exec, exit codes, the isolation level in the instance view and in
// `berth container show`, and nothing left behind by a delete.
func TestSandboxed(t *testing.T) {
	t.Parallel()
	e := newSandboxedEnv(t)
	busybox := testenv.PushBusyboxImage(t, e.reg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	name := "sbx-" + randomHex(t, 3)
	if _, err := e.create(ctx, t, name, sandboxedGroup(e.helloRef, busybox)); err != nil {
		t.Fatalf("create %s: %v\nserver log:\n%s", name, err, e.logExcerpt("level=ERROR", "level=WARN", name))
	}
	runCtx, cancelRun := context.WithTimeout(ctx, 2*time.Minute)
	cg := e.waitRunning(runCtx, t, name)
	cancelRun()

	t.Run("the instance view reports the isolation level", func(t *testing.T) {
		var found bool
		for _, ev := range cg.Properties.InstanceView.Events {
			if deref(ev.Name) == "Isolation" && deref(ev.Message) == "isolation: sandboxed (gVisor, systrap)" {
				found = true
			}
		}
		if !found {
			t.Errorf("no Isolation event among the group's events: %q", eventMessages(cg))
		}
	})

	t.Run("berth container show reports it", func(t *testing.T) {
		out := berthShow(t, e, name)
		if !strings.Contains(out, "isolation: sandboxed (gVisor, systrap)") {
			t.Errorf("berth container show lacks the isolation event:\n%s", out)
		}
	})

	t.Run("all containers run in one gVisor sandbox", func(t *testing.T) {
		runsc := processesWith(e.ctd.State, "runsc-sandbox")
		if len(runsc) != 1 {
			t.Errorf("runsc sandbox processes of this containerd: %d, want 1:\n%s", len(runsc), strings.Join(runsc, "\n"))
		}
	})

	t.Run("containers reach each other on localhost", func(t *testing.T) {
		if out, err := e.logsContain(ctx, name, "web-side", "Hello from Berth via localhost"); err != nil {
			t.Errorf("%v (%q)", err, out)
		}
	})

	t.Run("the group answers on its IP", func(t *testing.T) {
		fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
		defer fcancel()
		if body, err := fetchPage(fctx, groupIP(cg)); err != nil || !strings.Contains(body, "Hello from Berth") {
			t.Errorf("GET %s: %q, %v", groupIP(cg), body, err)
		}
	})

	t.Run("exec runs in the sandbox, whose kernel is gVisor's", func(t *testing.T) {
		host, err := os.ReadFile("/proc/sys/kernel/osrelease")
		if err != nil {
			t.Fatal(err)
		}
		s := e.postSession(ctx, t, name, "web-side", "exec", map[string]any{"command": "uname -r"})
		out, ce := e.runExec(ctx, t, s, nil)
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 0")
		if got := strings.TrimSpace(out); got == "" || got == strings.TrimSpace(string(host)) {
			t.Errorf("uname -r in the sandbox = %q, host %q: want another kernel", got, strings.TrimSpace(string(host)))
		}
		s = e.postSession(ctx, t, name, "web-side", "exec", map[string]any{"command": "dmesg"})
		out, ce = e.runExec(ctx, t, s, nil)
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 0")
		if !strings.Contains(out, "gVisor") {
			t.Errorf("dmesg in the sandbox = %q, want gVisor's boot messages", out)
		}
		s = e.postSession(ctx, t, name, "web-side", "exec", map[string]any{"command": `sh -c 'wget -qO- http://127.0.0.1:80/; exit 4'`})
		out, ce = e.runExec(ctx, t, s, nil)
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 4")
		if !strings.Contains(out, "Hello from Berth") {
			t.Errorf("wget over localhost in exec = %q", out)
		}
	})

	t.Run("a job's exit code is reported", func(t *testing.T) {
		deadline := time.Now().Add(time.Minute)
		for {
			resp, err := e.groups.Get(ctx, e.rg, name, nil)
			if err == nil {
				for _, c := range resp.Properties.Containers {
					if deref(c.Name) != "job" || c.Properties.InstanceView == nil || c.Properties.InstanceView.CurrentState == nil {
						continue
					}
					st := c.Properties.InstanceView.CurrentState
					if deref(st.State) == "Terminated" {
						if st.ExitCode == nil || *st.ExitCode != 3 {
							t.Errorf("job terminated with %v, want exit code 3", st.ExitCode)
						}
						if out, err := e.logsContain(ctx, name, "job", "job ran"); err != nil {
							t.Errorf("%v (%q)", err, out)
						}
						return
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("job not Terminated after 1m (last error %v)", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("a container over its group's memory is OOMKilled, as under runc", func(t *testing.T) {
		oom := "sbx-oom-" + randomHex(t, 3)
		hog := busyboxGroup(busybox, "hog", "Never", []*string{to.Ptr("/bin/sh"), to.Ptr("-c"), to.Ptr(`x=a; i=0; while [ $i -lt 40 ]; do x=$x$x; i=$((i+1)); done`)})
		hog.Properties.Containers[0].Properties.Resources.Requests.MemoryInGB = to.Ptr(0.1)
		if _, err := e.create(ctx, t, oom, hog); err != nil {
			t.Fatalf("create %s: %v", oom, err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			resp, err := e.groups.Get(ctx, e.rg, oom, nil)
			if err == nil && containerState(resp.ContainerGroup) == "Terminated" {
				st := resp.Properties.Containers[0].Properties.InstanceView.CurrentState
				if st.ExitCode == nil || *st.ExitCode != 137 || deref(st.DetailStatus) != "OOMKilled" {
					t.Errorf("hog terminated with exit %v, detail %q; want 137, OOMKilled", st.ExitCode, deref(st.DetailStatus))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("hog not Terminated after 1m (last error %v)", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err := e.remove(ctx, oom); err != nil {
			t.Errorf("delete %s: %v", oom, err)
		}
	})

	t.Run("the group survives a server restart", func(t *testing.T) {
		e.srv.Restart(t)
		rctx, rcancel := context.WithTimeout(ctx, time.Minute)
		defer rcancel()
		e.waitRunning(rctx, t, name)
		s := e.postSession(ctx, t, name, "web-side", "exec", map[string]any{"command": "wget -qO- http://127.0.0.1:80/"})
		out, ce := e.runExec(ctx, t, s, nil)
		wantClose(t, ce, websocket.CloseNormalClosure, "exit code 0")
		if !strings.Contains(out, "Hello from Berth") {
			t.Errorf("exec after the restart = %q", out)
		}
	})

	t.Run("delete leaves no shim, runsc process, container, snapshot or netns", func(t *testing.T) {
		if err := e.remove(ctx, name); err != nil {
			t.Fatalf("delete: %v", err)
		}
		st := e.runtimeState(ctx, t)
		if len(st.containers) != 0 || len(st.tasks) != 0 || len(st.active) != 0 {
			t.Errorf("left in containerd: containers %v, tasks %v, active snapshots %v", st.containers, st.tasks, st.active)
		}
		if files, mounts := e.netnsLeftovers(t); len(files) != 0 || len(mounts) != 0 {
			t.Errorf("netns left: files %v, mounts %v", files, mounts)
		}
		var procs []string
		ok := eventuallyTrue(15*time.Second, func() bool {
			procs = append(processesWith(" -address "+e.ctd.Address), processesWith(e.ctd.State)...)
			return len(procs) == 0
		})
		if !ok {
			t.Errorf("processes left:\n%s", strings.Join(procs, "\n"))
		}
		rules, err := testenv.RulesNamingHosts(e.srv.Subnet)
		if err != nil {
			t.Fatal(err)
		}
		if len(rules) != 0 {
			t.Errorf("iptables rules naming group addresses left:\n%s", strings.Join(rules, "\n"))
		}
	})
}

// berthShow runs `berth container show` against e's server, as a user
// would after `berth login`.
func berthShow(t *testing.T, e *env, name string) string {
	t.Helper()
	binary := testenv.BuildBerth(t)
	dir := t.TempDir()
	clientJSON := filepath.Join(dir, "client.json")
	b, err := json.Marshal(e.srv.Client)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(clientJSON, b, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(dir, "config.json"))
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("berth %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
		}
		return out.String()
	}
	run("login", "--config", clientJSON)
	return run("container", "show", "--subscription", e.sub, "--resource-group", e.rg, "--name", name)
}

// processesWith lists the host processes whose command line contains
// every one of words.
func processesWith(words ...string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		line := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		all := len(line) > 0
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			out = append(out, p+": "+line)
		}
	}
	return out
}

// eventuallyTrue polls cond every 100 ms until it holds or timeout passes.
func eventuallyTrue(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
