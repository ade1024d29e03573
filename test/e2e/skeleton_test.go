package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
)

// TestSkeleton_Lifecycle is the walking skeleton's acceptance test: create a
// group through the Azure SDK, reach its web page, read its logs, find it in
// both lists, delete it, and check that nothing is left in containerd or on
// the host.
func TestSkeleton_Lifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	name := "hello-" + randomHex(t, 3)

	cg, err := e.create(ctx, t, name, helloGroup(e.helloRef))
	if err != nil {
		t.Fatalf("create %s: %v\nserver log:\n%s", name, err, e.logExcerpt("level=ERROR", "level=WARN", name))
	}
	if got := provisioningState(cg); got != "Succeeded" {
		t.Errorf("got provisioningState %q from the create poller, want Succeeded", got)
	}

	got, err := e.groups.Get(ctx, e.rg, name, nil)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	cg = got.ContainerGroup
	if s := provisioningState(cg); s != "Succeeded" {
		t.Errorf("got provisioningState %q, want Succeeded", s)
	}
	if s := containerState(cg); s != "Running" {
		t.Errorf("got container state %q, want Running (events %q)", s, eventMessages(cg))
	}
	ip := groupIP(cg)
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("got IP %q, want an address: %v", ip, err)
	}
	if subnet := netip.MustParsePrefix(e.srv.Subnet); !subnet.Contains(addr) {
		t.Errorf("got IP %s outside the server's subnet %s", ip, subnet)
	}

	t.Run("the page answers on the group IP", func(t *testing.T) {
		pageCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		body, err := fetchPage(pageCtx, ip)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, "Hello from Berth") {
			t.Errorf("got page %q, want it to contain Hello from Berth", body)
		}
	})

	t.Run("the logs show the server starting", func(t *testing.T) {
		logCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := e.logsContain(logCtx, name, "hello", "hello: listening"); err != nil {
			t.Error(err)
		}
	})

	t.Run("both lists include the group", func(t *testing.T) {
		all, err := listNames(ctx, e.groups.NewListPager(nil), func(p armcontainerinstance.ContainerGroupsClientListResponse) []*armcontainerinstance.ContainerGroup {
			return p.Value
		})
		if err != nil {
			t.Errorf("list: %v", err)
		} else if !slices.Contains(all, name) {
			t.Errorf("subscription list %q lacks %s", all, name)
		}
		inRG, err := listNames(ctx, e.groups.NewListByResourceGroupPager(e.rg, nil), func(p armcontainerinstance.ContainerGroupsClientListByResourceGroupResponse) []*armcontainerinstance.ContainerGroup {
			return p.Value
		})
		if err != nil {
			t.Errorf("list by resource group: %v", err)
		} else if !slices.Contains(inRG, name) {
			t.Errorf("resource group list %q lacks %s", inRG, name)
		}
	})

	before := e.runtimeState(ctx, t)
	if len(before.containers) == 0 || len(before.tasks) == 0 {
		t.Errorf("containerd namespace %s holds containers %v and tasks %v while the group runs, want at least one of each", berthNamespace, before.containers, before.tasks)
	}

	if err := e.remove(ctx, name); err != nil {
		t.Fatalf("delete %s: %v\nserver log:\n%s", name, err, e.logExcerpt("level=ERROR", "level=WARN", name))
	}
	_, err = e.groups.Get(ctx, e.rg, name, nil)
	var re *azcore.ResponseError
	switch {
	case err == nil:
		t.Errorf("Get after delete succeeded, want 404")
	case !errors.As(err, &re):
		t.Errorf("Get after delete: got %v, want an azcore.ResponseError", err)
	case re.StatusCode != http.StatusNotFound || re.ErrorCode != "ResourceNotFound":
		t.Errorf("Get after delete: got status %d code %q, want 404 ResourceNotFound", re.StatusCode, re.ErrorCode)
	}

	t.Run("nothing is left in containerd", func(t *testing.T) {
		after := e.runtimeState(ctx, t)
		if len(after.containers) > 0 {
			t.Errorf("containers left: %v", after.containers)
		}
		if len(after.tasks) > 0 {
			t.Errorf("tasks left: %v", after.tasks)
		}
		if len(after.active) > 0 {
			t.Errorf("active snapshots left: %v", after.active)
		}
		for id, key := range before.containers {
			if key != "" && slices.Contains(after.active, key) {
				t.Errorf("snapshot %s of container %s left", key, id)
			}
		}
	})

	t.Run("nothing is left on the host", func(t *testing.T) {
		e.checkHostClean(t)
	})
}

// TestSkeleton_ServerRestart checks that stopping the server leaves the
// group running untouched and that a new server adopts it.
func TestSkeleton_ServerRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	name := "restart-" + randomHex(t, 3)

	if _, err := e.create(ctx, t, name, helloGroup(e.helloRef)); err != nil {
		t.Fatalf("create %s: %v\nserver log:\n%s", name, err, e.logExcerpt("level=ERROR", "level=WARN", name))
	}
	runningCtx, cancelRunning := context.WithTimeout(ctx, time.Minute)
	cg := e.waitRunning(runningCtx, t, name)
	cancelRunning()
	ip := groupIP(cg)
	if ip == "" {
		t.Fatalf("group %s has no IP", name)
	}
	before := e.runtimeState(ctx, t)
	if len(before.tasks) == 0 {
		t.Fatalf("no containerd task runs for %s", name)
	}

	e.srv.Restart(t)

	t.Run("the containerd tasks kept running with the same PIDs", func(t *testing.T) {
		after := e.runtimeState(ctx, t)
		for id, pid := range before.tasks {
			if got, ok := after.tasks[id]; !ok {
				t.Errorf("task %s is gone", id)
			} else if got != pid {
				t.Errorf("task %s has PID %d, want %d (it was restarted)", id, got, pid)
			} else if after.statuses[id] != "RUNNING" {
				t.Errorf("task %s is %s, want RUNNING", id, after.statuses[id])
			}
		}
		for id := range after.tasks {
			if _, ok := before.tasks[id]; !ok {
				t.Errorf("new task %s appeared after the restart", id)
			}
		}
	})

	t.Run("the API still reports the group Running with the same IP", func(t *testing.T) {
		got, err := e.groups.Get(ctx, e.rg, name, nil)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if s := containerState(got.ContainerGroup); s != "Running" {
			t.Errorf("got container state %q, want Running", s)
		}
		if s := provisioningState(got.ContainerGroup); s != "Succeeded" {
			t.Errorf("got provisioningState %q, want Succeeded", s)
		}
		if got := groupIP(got.ContainerGroup); got != ip {
			t.Errorf("got IP %q, want %q as before the restart", got, ip)
		}
	})

	t.Run("the page still answers", func(t *testing.T) {
		pageCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		body, err := fetchPage(pageCtx, ip)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, "Hello from Berth") {
			t.Errorf("got page %q", body)
		}
	})

	if err := e.remove(ctx, name); err != nil {
		t.Fatalf("delete %s after the restart: %v\nserver log:\n%s", name, err, e.logExcerpt("level=ERROR", "level=WARN", name))
	}
	if after := e.runtimeState(ctx, t); len(after.containers)+len(after.tasks) > 0 {
		t.Errorf("after delete, containerd still holds containers %v and tasks %v", after.containers, after.tasks)
	}
	e.checkHostClean(t)
}

// TestSkeleton_MissingImage checks the failure path: an image the registry
// does not have fails the create, and the group says why.
func TestSkeleton_MissingImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	name := "missing-" + randomHex(t, 3)
	image := e.reg.Ref("berth/does-not-exist:1")

	_, err := e.create(ctx, t, name, helloGroup(image))
	if err == nil {
		t.Fatalf("create with missing image %s succeeded, want the poller to fail", image)
	}
	t.Logf("create failed as expected: %v", err)
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Errorf("got error %T, want an azcore.ResponseError", err)
	} else if re.ErrorCode != "InaccessibleImage" {
		t.Errorf("got error code %q, want InaccessibleImage as ACI reports", re.ErrorCode)
	}

	got, err := e.groups.Get(ctx, e.rg, name, nil)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	cg := got.ContainerGroup
	if s := provisioningState(cg); s != "Failed" {
		t.Errorf("got provisioningState %q, want Failed", s)
	}
	msgs := eventMessages(cg)
	if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, image) }) {
		t.Errorf("no event message names the image %s; events: %q", image, msgs)
	}

	if err := e.remove(ctx, name); err != nil {
		t.Errorf("delete the failed group: %v", err)
	}
	if after := e.runtimeState(ctx, t); len(after.containers)+len(after.tasks)+len(after.active) > 0 {
		t.Errorf("after delete, containerd still holds containers %v, tasks %v, active snapshots %v", after.containers, after.tasks, after.active)
	}
	e.checkHostClean(t)
}
