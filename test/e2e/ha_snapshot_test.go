package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"

	"github.com/berth-dev/berth/internal/testenv"
)

// TestSnapshot is backup and restore: a snapshot taken while groups are
// being created restores into a new server with every group acknowledged
// before it, none of the others half there, and the restored server runs
// groups, old and new. A damaged snapshot stops the server instead.
func TestSnapshot(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Groups that exist before the snapshot, Running.
	var pre []string
	for i := range 10 {
		name := fmt.Sprintf("pre-%d", i)
		if _, err := e.groups.BeginCreateOrUpdate(ctx, e.rg, name, smallGroup(e.helloRef, 0.1), nil); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		pre = append(pre, name)
	}
	for _, name := range pre {
		e.waitRunning(ctx, t, name)
	}

	// Load: more groups keep being created while the snapshot is taken.
	var (
		mu        sync.Mutex
		acked     []string // PUT answered 200/201
		attempted []string
	)
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("load-%d", i)
			mu.Lock()
			attempted = append(attempted, name)
			mu.Unlock()
			if _, err := e.groups.BeginCreateOrUpdate(ctx, e.rg, name, smallGroup(e.helloRef, 0.1), nil); err != nil {
				t.Logf("load: create %s: %v", name, err)
				continue
			}
			mu.Lock()
			acked = append(acked, name)
			mu.Unlock()
		}
	}()
	// Let the load get going, so that the snapshot races it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the load created %d groups in a minute", n)
		}
	}
	mu.Lock()
	before := append(slices.Clone(pre), acked...)
	mu.Unlock()
	c := &cluster{env: e}
	snap := filepath.Join(t.TempDir(), "berth.db")
	out := c.cli(t, "cluster", "snapshot", "save", snap)
	t.Logf("berth cluster snapshot save: %s", strings.TrimSpace(out))
	close(stop)
	<-loadDone
	if !strings.Contains(out, "revision") || !strings.Contains(out, "sha256") {
		t.Errorf("snapshot save printed %q, want its revision and sha256", out)
	}
	if fi, err := os.Stat(snap); err != nil || fi.Size() == 0 {
		t.Fatalf("snapshot file: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(snap), ".*tmp*")); len(left) > 0 {
		t.Errorf("snapshot save left temporary files: %v", left)
	}
	e.srv.Stop(t)

	t.Run("a damaged snapshot stops the server", func(t *testing.T) {
		b, err := os.ReadFile(snap)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		bad := filepath.Join(t.TempDir(), "bad.db")
		if err := os.WriteFile(bad, b, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		cctx, ccancel := context.WithTimeout(ctx, time.Minute)
		defer ccancel()
		cmd := exec.CommandContext(cctx, testenv.BuildBerth(t), "server", "--data-dir", dir,
			"--listen", "127.0.0.1:1", "--local-agent=false", "--restore-snapshot", bad)
		var output bytes.Buffer
		cmd.Stdout, cmd.Stderr = &output, &output
		err = cmd.Run()
		if err == nil || cmd.ProcessState == nil || cmd.ProcessState.ExitCode() <= 0 {
			t.Fatalf("berth server with a damaged snapshot: %v, want a non-zero exit\n%s", err, output.String())
		}
		if !strings.Contains(output.String(), "damaged") {
			t.Errorf("berth server said %q, want it to name the damaged snapshot", output.String())
		}
		if _, err := os.Stat(filepath.Join(dir, "etcd", "member")); err == nil {
			t.Error("a refused restore left an etcd member")
		}
	})

	// The new server: its own containerd, a fresh data dir, the snapshot.
	r := *e
	r.ctd = testenv.StartContainerd(t)
	r.srv = testenv.StartServer(t, testenv.ServerOptions{
		Containerd: r.ctd, InsecureRegistries: []string{e.reg.Addr}, Isolation: e.isolation,
		ExtraArgs: []string{"--restore-snapshot", snap},
	})
	r.ctr = r.ctd.Client(t)
	var err error
	if r.groups, err = armcontainerinstance.NewContainerGroupsClient(e.sub, staticToken(r.srv.Client.Token), r.armOptions()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	all := append(slices.Clone(pre), attempted...)
	mu.Unlock()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, name := range append(all, "after") {
			wg.Go(func() { r.deleteIfExists(t, name) })
		}
		wg.Wait()
	})

	for _, name := range before {
		if _, err := r.groups.Get(ctx, e.rg, name, nil); err != nil {
			t.Errorf("group %s, acknowledged before the snapshot, after restore: %v", name, err)
		}
	}
	listed, err := listNames(ctx, r.groups.NewListByResourceGroupPager(e.rg, nil),
		func(p armcontainerinstance.ContainerGroupsClientListByResourceGroupResponse) []*armcontainerinstance.ContainerGroup {
			return p.Value
		})
	if err != nil {
		t.Fatalf("list after restore: %v", err)
	}
	for _, name := range before {
		if !slices.Contains(listed, name) {
			t.Errorf("group %s is not listed after restore", name)
		}
	}
	for _, name := range listed {
		if !slices.Contains(all, name) {
			t.Errorf("group %s listed after restore was never created", name)
			continue
		}
		// Whole: it answers, with its containers.
		g, err := r.groups.Get(ctx, e.rg, name, nil)
		if err != nil {
			t.Errorf("group %s is listed after restore, but: %v", name, err)
			continue
		}
		if g.Properties == nil || len(g.Properties.Containers) != 1 {
			t.Errorf("group %s after restore is half there: %+v", name, g.Properties)
		}
	}
	// Groups created during the snapshot are there or not, never half.
	for _, name := range attempted {
		_, err := r.groups.Get(ctx, e.rg, name, nil)
		switch {
		case err == nil && !slices.Contains(listed, name):
			t.Errorf("group %s answers after restore but is not listed", name)
		case err != nil && !isNotFound(err):
			t.Errorf("group %s after restore: %v", name, err)
		}
	}
	t.Logf("restored %d groups: %d acknowledged before the snapshot, %d created during it", len(listed), len(before), len(attempted))

	// The restored groups are bound to node "local", which the new
	// server's agent is: they run there. A new group runs too.
	r.waitRunning(ctx, t, pre[0])
	if _, err := r.create(ctx, t, "after", smallGroup(e.helloRef, 0.1)); err != nil {
		t.Fatalf("create a group on the restored server: %v", err)
	}
	r.waitRunning(ctx, t, "after")
}
