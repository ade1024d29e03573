package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/berth-dev/berth/internal/testenv"
)

// The behaviours of issue 3, each through the Azure SDK against a real
// server on real containerd, sharing one environment.

type cgSpec = armcontainerinstance.ContainerGroup

func box(name, image string, cpu, mem float64, cmd ...string) *armcontainerinstance.Container {
	c := &armcontainerinstance.Container{
		Name: to.Ptr(name),
		Properties: &armcontainerinstance.ContainerProperties{
			Image: to.Ptr(image),
			Resources: &armcontainerinstance.ResourceRequirements{
				Requests: &armcontainerinstance.ResourceRequests{CPU: to.Ptr(cpu), MemoryInGB: to.Ptr(mem)},
			},
		},
	}
	if len(cmd) > 0 {
		c.Properties.Command = to.SliceOfPtrs(cmd...)
	}
	return c
}

func group(policy armcontainerinstance.ContainerGroupRestartPolicy, containers ...*armcontainerinstance.Container) cgSpec {
	return cgSpec{
		Location: to.Ptr("westus"),
		Properties: &armcontainerinstance.ContainerGroupPropertiesProperties{
			OSType:        to.Ptr(armcontainerinstance.OperatingSystemTypesLinux),
			RestartPolicy: to.Ptr(policy),
			Containers:    containers,
		},
	}
}

// until polls the group until ok holds.
func (e *env) until(ctx context.Context, t *testing.T, name, what string, ok func(cgSpec) bool) cgSpec {
	t.Helper()
	var last cgSpec
	var lastErr error
	for {
		resp, err := e.groups.Get(ctx, e.rg, name, nil)
		lastErr = err
		if err == nil {
			last = resp.ContainerGroup
			if ok(last) {
				return last
			}
		}
		select {
		case <-ctx.Done():
			b, _ := json.MarshalIndent(last, "", " ")
			t.Fatalf("group %s: %s never happened (last error %v); last view:\n%s", name, what, lastErr, b)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func view(cg cgSpec, container string) *armcontainerinstance.ContainerPropertiesInstanceView {
	for _, list := range [][]*armcontainerinstance.Container{cg.Properties.Containers} {
		for _, c := range list {
			if *c.Name == container && c.Properties.InstanceView != nil {
				return c.Properties.InstanceView
			}
		}
	}
	for _, c := range cg.Properties.InitContainers {
		if *c.Name == container && c.Properties.InstanceView != nil {
			iv := c.Properties.InstanceView
			return &armcontainerinstance.ContainerPropertiesInstanceView{
				CurrentState: iv.CurrentState, PreviousState: iv.PreviousState, RestartCount: iv.RestartCount, Events: iv.Events,
			}
		}
	}
	return &armcontainerinstance.ContainerPropertiesInstanceView{}
}

func state(iv *armcontainerinstance.ContainerPropertiesInstanceView) (string, int32, string) {
	if iv == nil || iv.CurrentState == nil || iv.CurrentState.State == nil {
		return "", -1, ""
	}
	code := int32(-1)
	if iv.CurrentState.ExitCode != nil {
		code = *iv.CurrentState.ExitCode
	}
	detail := ""
	if iv.CurrentState.DetailStatus != nil {
		detail = *iv.CurrentState.DetailStatus
	}
	return *iv.CurrentState.State, code, detail
}

func groupState(cg cgSpec) string {
	if cg.Properties.InstanceView == nil || cg.Properties.InstanceView.State == nil {
		return ""
	}
	return *cg.Properties.InstanceView.State
}

func hasEvent(iv *armcontainerinstance.ContainerPropertiesInstanceView, name string) bool {
	for _, ev := range iv.Events {
		if ev.Name != nil && *ev.Name == name {
			return true
		}
	}
	return false
}

func armCode(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// containersOf lists the containerd containers of one of the test's groups.
func (e *env) containersOf(ctx context.Context, t *testing.T, name string) []string {
	t.Helper()
	ctx = namespaces.WithNamespace(ctx, berthNamespace)
	key := strings.ToLower(e.sub + "/" + e.rg + "/" + name)
	ctrs, err := e.ctr.Containers(ctx, `labels."io.berth.group"==`+strconv.Quote(key))
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var ids []string
	for _, c := range ctrs {
		ids = append(ids, c.ID())
	}
	return ids
}

func TestFidelity(t *testing.T) {
	e := newEnv(t)
	busybox := testenv.PushBusyboxImage(t, e.reg)
	const (
		always    = armcontainerinstance.ContainerGroupRestartPolicyAlways
		never     = armcontainerinstance.ContainerGroupRestartPolicyNever
		onFailure = armcontainerinstance.ContainerGroupRestartPolicyOnFailure
	)

	t.Run("containers of a group share localhost", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		web := box("web", e.helloRef, 0.5, 0.25)
		side := box("side", busybox, 0.25, 0.25, "/bin/sh", "-c", "sleep 1; wget -qO- http://127.0.0.1:80/; sleep 3600")
		if _, err := e.create(ctx, t, "localhost", group(always, web, side)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.logsContain(ctx, "localhost", "side", "Hello from Berth"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("command, env and secure env reach the container; the secure value never comes back", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := box("env", busybox, 0.25, 0.25, "/bin/sh", "-c", `echo "plain=$PLAIN secret=$SECRET"; sleep 3600`)
		c.Properties.EnvironmentVariables = []*armcontainerinstance.EnvironmentVariable{
			{Name: to.Ptr("PLAIN"), Value: to.Ptr("visible")},
			{Name: to.Ptr("SECRET"), SecureValue: to.Ptr("hush-4242")},
		}
		cg, err := e.create(ctx, t, "envs", group(always, c))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.logsContain(ctx, "envs", "env", "plain=visible secret=hush-4242"); err != nil {
			t.Fatal(err)
		}
		got, _ := e.groups.Get(ctx, e.rg, "envs", nil)
		for _, doc := range []cgSpec{cg, got.ContainerGroup} {
			b, _ := json.Marshal(doc)
			if strings.Contains(string(b), "hush-4242") {
				t.Fatalf("the secure value came back: %s", b)
			}
		}
	})

	t.Run("cpu quota and memory limit are enforced in cgroups", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := box("limits", busybox, 0.5, 0.25, "/bin/sh", "-c", "sleep 3600")
		if _, err := e.create(ctx, t, "limits", group(always, c)); err != nil {
			t.Fatal(err)
		}
		ids := e.containersOf(ctx, t, "limits")
		// These hosts have cgroup v1 controllers; the agent puts each
		// container under /berth/<id>. Under gVisor the host enforces the
		// limits on the group's sandbox, the one process tree it sees: the
		// group's total, plus the sandbox's own 64 MiB for memory.
		cg, memory := "", "268435456"
		for _, id := range ids {
			if strings.HasPrefix(id, "sandbox-") == (e.isolation == "sandboxed") {
				cg = id
			}
		}
		if e.isolation == "sandboxed" {
			memory = strconv.Itoa(268435456 + 64<<20)
		}
		if len(ids) != map[bool]int{false: 1, true: 2}[e.isolation == "sandboxed"] || cg == "" {
			t.Fatalf("containers of the group under %s: %v", e.isolation, ids)
		}
		for file, want := range map[string]string{
			"/sys/fs/cgroup/cpu/berth/" + cg + "/cpu.cfs_quota_us":         "50000",
			"/sys/fs/cgroup/cpu/berth/" + cg + "/cpu.cfs_period_us":        "100000",
			"/sys/fs/cgroup/memory/berth/" + cg + "/memory.limit_in_bytes": memory,
		} {
			b, err := os.ReadFile(file)
			if err != nil || strings.TrimSpace(string(b)) != want {
				t.Errorf("%s = %q (%v), want %s", file, b, err, want)
			}
		}
	})

	t.Run("a container over its memory limit is OOM-killed with 137 and an event", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := box("hog", busybox, 0.5, 0.0625, "/bin/sh", "-c", "echo start; tail /dev/zero")
		if _, err := e.create(ctx, t, "oom", group(never, c)); err != nil {
			t.Fatal(err)
		}
		cg := e.until(ctx, t, "oom", "container terminated", func(cg cgSpec) bool { s, _, _ := state(view(cg, "hog")); return s == "Terminated" })
		s, code, detail := state(view(cg, "hog"))
		if code != 137 || detail != "OOMKilled" || !hasEvent(view(cg, "hog"), "OOMKilled") {
			t.Fatalf("state %s, exit %d, detail %q, events %v; want 137 OOMKilled with an OOMKilled event", s, code, detail, eventMessages(cg))
		}
		if groupState(cg) != "Failed" {
			t.Errorf("group state %q, want Failed", groupState(cg))
		}
	})

	t.Run("restart policy Never leaves a failed container terminated", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := e.create(ctx, t, "never", group(never, box("job", busybox, 0.25, 0.25, "/bin/sh", "-c", "echo working; exit 3"))); err != nil {
			t.Fatal(err)
		}
		cg := e.until(ctx, t, "never", "group Failed", func(cg cgSpec) bool { return groupState(cg) == "Failed" })
		s, code, detail := state(view(cg, "job"))
		if s != "Terminated" || code != 3 || detail != "Error" || *view(cg, "job").RestartCount != 0 {
			t.Fatalf("job: %s exit %d %q restarts %d", s, code, detail, *view(cg, "job").RestartCount)
		}
		if *cg.Properties.ProvisioningState != "Succeeded" {
			t.Errorf("provisioningState %s, want Succeeded (the containers did start)", *cg.Properties.ProvisioningState)
		}
	})

	t.Run("restart policy Never with success is Succeeded", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := e.create(ctx, t, "done", group(never, box("job", busybox, 0.25, 0.25, "/bin/sh", "-c", "echo done"))); err != nil {
			t.Fatal(err)
		}
		cg := e.until(ctx, t, "done", "group Succeeded", func(cg cgSpec) bool { return groupState(cg) == "Succeeded" })
		if s, code, detail := state(view(cg, "job")); s != "Terminated" || code != 0 || detail != "Completed" {
			t.Fatalf("job: %s exit %d %q", s, code, detail)
		}
	})

	t.Run("restart policy OnFailure restarts with back-off and counts", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := e.create(ctx, t, "flaky", group(onFailure, box("job", busybox, 0.25, 0.25, "/bin/sh", "-c", "echo try; exit 1"))); err != nil {
			t.Fatal(err)
		}
		cg := e.until(ctx, t, "flaky", "a restart", func(cg cgSpec) bool { return *view(cg, "job").RestartCount >= 1 })
		iv := view(cg, "job")
		if iv.PreviousState == nil || iv.PreviousState.ExitCode == nil || *iv.PreviousState.ExitCode != 1 {
			t.Fatalf("previousState = %+v, want Terminated with exit 1", iv.PreviousState)
		}
		if !hasEvent(iv, "BackOff") {
			t.Errorf("no BackOff event: %v", eventMessages(cg))
		}
		if groupState(cg) != "Running" {
			t.Errorf("group state %q while restarting, want Running", groupState(cg))
		}
	})

	t.Run("init containers run in order before the main containers", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		mount := []*armcontainerinstance.VolumeMount{{Name: to.Ptr("work"), MountPath: to.Ptr("/work")}}
		first := &armcontainerinstance.InitContainerDefinition{Name: to.Ptr("first"), Properties: &armcontainerinstance.InitContainerPropertiesDefinition{
			Image: to.Ptr(busybox), Command: to.SliceOfPtrs("/bin/sh", "-c", "echo first >> /work/order"), VolumeMounts: mount}}
		second := &armcontainerinstance.InitContainerDefinition{Name: to.Ptr("second"), Properties: &armcontainerinstance.InitContainerPropertiesDefinition{
			Image: to.Ptr(busybox), Command: to.SliceOfPtrs("/bin/sh", "-c", "sleep 1; echo second >> /work/order"), VolumeMounts: mount}}
		main := box("main", busybox, 0.25, 0.25, "/bin/sh", "-c", "echo order=$(cat /work/order | tr '\\n' ,); sleep 3600")
		main.Properties.VolumeMounts = mount
		spec := group(always, main)
		spec.Properties.InitContainers = []*armcontainerinstance.InitContainerDefinition{first, second}
		spec.Properties.Volumes = []*armcontainerinstance.Volume{{Name: to.Ptr("work"), EmptyDir: map[string]any{}}}
		if _, err := e.create(ctx, t, "inits", spec); err != nil {
			t.Fatal(err)
		}
		if _, err := e.logsContain(ctx, "inits", "main", "order=first,second,"); err != nil {
			t.Fatal(err)
		}
		cg := e.until(ctx, t, "inits", "running", func(cg cgSpec) bool { return groupState(cg) == "Running" })
		for _, name := range []string{"first", "second"} {
			if s, code, _ := state(view(cg, name)); s != "Terminated" || code != 0 {
				t.Errorf("init container %s: %s exit %d, want Terminated 0", name, s, code)
			}
		}
	})

	t.Run("a failing init container fails the group and the main containers never start", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		spec := group(never, box("main", busybox, 0.25, 0.25, "/bin/sh", "-c", "echo main-ran; sleep 3600"))
		spec.Properties.InitContainers = []*armcontainerinstance.InitContainerDefinition{{Name: to.Ptr("setup"),
			Properties: &armcontainerinstance.InitContainerPropertiesDefinition{Image: to.Ptr(busybox), Command: to.SliceOfPtrs("/bin/sh", "-c", "exit 4")}}}
		_, err := e.create(ctx, t, "badinit", spec)
		if code := armCode(err); code != "InitContainerFailed" {
			t.Fatalf("create error = %v (code %q), want InitContainerFailed", err, code)
		}
		cg := e.until(ctx, t, "badinit", "Failed", func(cg cgSpec) bool { return groupState(cg) == "Failed" })
		if s, _, _ := state(view(cg, "main")); s != "Waiting" {
			t.Errorf("main container is %q, want Waiting (never started)", s)
		}
	})

	t.Run("a failing liveness probe restarts the container with events", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := box("app", busybox, 0.25, 0.25, "/bin/sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600")
		c.Properties.LivenessProbe = &armcontainerinstance.ContainerProbe{
			Exec:             &armcontainerinstance.ContainerExec{Command: to.SliceOfPtrs("cat", "/tmp/healthy")},
			PeriodSeconds:    to.Ptr[int32](1),
			FailureThreshold: to.Ptr[int32](2),
		}
		if _, err := e.create(ctx, t, "liveness", group(always, c)); err != nil {
			t.Fatal(err)
		}
		cg := e.until(ctx, t, "liveness", "a restart", func(cg cgSpec) bool { return *view(cg, "app").RestartCount >= 1 })
		iv := view(cg, "app")
		if !hasEvent(iv, "Unhealthy") || !hasEvent(iv, "Killing") {
			t.Errorf("events lack Unhealthy and Killing: %v", eventMessages(cg))
		}
	})

	t.Run("readiness is reported in the instance view", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		ready := box("ready", e.helloRef, 0.25, 0.25)
		ready.Properties.ReadinessProbe = &armcontainerinstance.ContainerProbe{
			HTTPGet: &armcontainerinstance.ContainerHTTPGet{Port: to.Ptr[int32](80), Path: to.Ptr("/")}, PeriodSeconds: to.Ptr[int32](1)}
		if _, err := e.create(ctx, t, "ready", group(always, ready)); err != nil {
			t.Fatal(err)
		}
		e.until(ctx, t, "ready", "Ready", func(cg cgSpec) bool { _, _, d := state(view(cg, "ready")); return d == "Ready" })

		notReady := box("unready", e.helloRef, 0.25, 0.25)
		notReady.Properties.ReadinessProbe = &armcontainerinstance.ContainerProbe{
			HTTPGet: &armcontainerinstance.ContainerHTTPGet{Port: to.Ptr[int32](81)}, PeriodSeconds: to.Ptr[int32](1)}
		if _, err := e.create(ctx, t, "unready", group(always, notReady)); err != nil {
			t.Fatal(err)
		}
		cg := e.until(ctx, t, "unready", "an Unhealthy event", func(cg cgSpec) bool { return hasEvent(view(cg, "unready"), "Unhealthy") })
		if s, _, d := state(view(cg, "unready")); s != "Running" || d != "NotReady" {
			t.Errorf("unready container: %s %q, want Running NotReady", s, d)
		}
	})

	t.Run("stop, start and restart", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cg, err := e.create(ctx, t, "lifecycle", helloGroup(e.helloRef))
		if err != nil {
			t.Fatal(err)
		}
		cg = e.waitRunning(ctx, t, "lifecycle")
		ip, started := groupIP(cg), *view(cg, "hello").CurrentState.StartTime

		rp, err := e.groups.BeginRestart(ctx, e.rg, "lifecycle", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.PollUntilDone(ctx, pollEvery); err != nil {
			t.Fatal(err)
		}
		cg = e.until(ctx, t, "lifecycle", "restarted", func(cg cgSpec) bool {
			iv := view(cg, "hello")
			return iv.CurrentState != nil && iv.CurrentState.StartTime != nil && iv.CurrentState.StartTime.After(started) && *iv.CurrentState.State == "Running"
		})
		if groupIP(cg) != ip {
			t.Errorf("restart changed the IP from %s to %s", ip, groupIP(cg))
		}
		if !hasEvent(view(cg, "hello"), "Killing") {
			t.Errorf("restart without Killing event: %v", eventMessages(cg))
		}
		if _, err := fetchPage(ctx, ip); err != nil {
			t.Fatal(err)
		}

		if _, err := e.groups.Stop(ctx, e.rg, "lifecycle", nil); err != nil {
			t.Fatal(err)
		}
		e.until(ctx, t, "lifecycle", "Stopped", func(cg cgSpec) bool { return groupState(cg) == "Stopped" })
		if ids := e.containersOf(ctx, t, "lifecycle"); len(ids) != 0 {
			t.Errorf("containers %v still exist after stop", ids)
		}

		sp, err := e.groups.BeginStart(ctx, e.rg, "lifecycle", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sp.PollUntilDone(ctx, pollEvery); err != nil {
			t.Fatal(err)
		}
		cg = e.waitRunning(ctx, t, "lifecycle")
		if _, err := fetchPage(ctx, groupIP(cg)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("updates: in-place changes redeploy, resource changes are refused, PATCH sets tags", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		spec := group(always, box("app", busybox, 0.25, 0.25, "/bin/sh", "-c", `echo "version=$VERSION"; sleep 3600`))
		spec.Properties.Containers[0].Properties.EnvironmentVariables = []*armcontainerinstance.EnvironmentVariable{{Name: to.Ptr("VERSION"), Value: to.Ptr("one")}}
		if _, err := e.create(ctx, t, "updates", spec); err != nil {
			t.Fatal(err)
		}
		if _, err := e.logsContain(ctx, "updates", "app", "version=one"); err != nil {
			t.Fatal(err)
		}
		spec.Properties.Containers[0].Properties.EnvironmentVariables[0].Value = to.Ptr("two")
		if _, err := e.create(ctx, t, "updates", spec); err != nil {
			t.Fatal(err)
		}
		if _, err := e.logsContain(ctx, "updates", "app", "version=two"); err != nil {
			t.Fatal(err)
		}

		spec.Properties.Containers[0].Properties.Resources.Requests.CPU = to.Ptr(0.5)
		_, err := e.groups.BeginCreateOrUpdate(ctx, e.rg, "updates", spec, nil)
		if code := armCode(err); code != "InvalidContainerGroupUpdate" {
			t.Fatalf("cpu change: error %v (code %q), want InvalidContainerGroupUpdate", err, code)
		}

		resp, err := e.groups.Update(ctx, e.rg, "updates", armcontainerinstance.Resource{Tags: map[string]*string{"team": to.Ptr("blue")}}, nil)
		if err != nil || resp.Tags["team"] == nil || *resp.Tags["team"] != "blue" {
			t.Fatalf("PATCH tags: %v %+v", err, resp.Tags)
		}
	})

	t.Run("validation refuses what ACI refuses, with its codes", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		windows := group(always, box("w", busybox, 0.25, 0.25))
		windows.Properties.OSType = to.Ptr(armcontainerinstance.OperatingSystemTypesWindows)
		dupNames := group(always, box("same", busybox, 0.25, 0.25), box("same", busybox, 0.25, 0.25))
		tooBig := group(always, box("big", busybox, 8, 0.25))
		badName := group(always, box("Bad_Name", busybox, 0.25, 0.25))
		for _, tc := range []struct {
			name string
			spec cgSpec
			code string
		}{
			{"windows", windows, "UnsupportedOsType"},
			{"dupnames", dupNames, "DuplicateContainerName"},
			{"toobig", tooBig, "InvalidContainerResources"},
			{"badname", badName, "InvalidContainerName"},
		} {
			_, err := e.groups.BeginCreateOrUpdate(ctx, e.rg, tc.name, tc.spec, nil)
			if code := armCode(err); code != tc.code {
				t.Errorf("%s: error %v (code %q), want %s", tc.name, err, code, tc.code)
			}
			if _, err := e.groups.Get(ctx, e.rg, tc.name, nil); !isNotFound(err) {
				t.Errorf("%s: a refused group exists: %v", tc.name, err)
			}
		}
	})
}
