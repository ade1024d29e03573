// Package e2e drives a real `berth server` (embedded etcd, containerd, CNI)
// through the Azure SDK for Go, the way an ACI user would.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/google/uuid"
	"github.com/moby/sys/mountinfo"

	"github.com/berth-dev/berth/internal/testenv"
)

// berthNamespace is the containerd namespace berth server uses.
const berthNamespace = "berth"

// pollEvery is the LRO polling frequency (the SDK's minimum).
var pollEvery = &runtime.PollUntilDoneOptions{Frequency: time.Second}

// env is one complete, private Berth installation: containerd, a registry
// holding the test images, a server, and SDK clients for a fresh
// subscription and resource group.
type env struct {
	ctd        *testenv.Containerd
	reg        *testenv.Registry
	srv        *testenv.Server
	ctr        *client.Client
	isolation  string // the server's --isolation
	helloRef   string
	sub, rg    string
	token      string // the principal's bearer token
	groups     *armcontainerinstance.ContainerGroupsClient
	containers *armcontainerinstance.ContainersClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with more `berth server` flags.
func newEnvWith(t *testing.T, serverArgs []string) *env {
	t.Helper()
	return newEnvOpts(t, testenv.ServerOptions{ExtraArgs: serverArgs})
}

// newEnvOpts is newEnv with a server started with opts; the containerd
// and the registry are the env's own.
func newEnvOpts(t *testing.T, opts testenv.ServerOptions) *env {
	t.Helper()
	testenv.RequireRoot(t)
	if opts.Isolation == "" {
		opts.Isolation = testenv.DefaultIsolation()
	}
	if opts.Isolation == "sandboxed" {
		testenv.RequireRunsc(t)
	}
	e := &env{isolation: opts.Isolation}
	e.ctd = testenv.StartContainerd(t)
	e.reg = testenv.StartRegistry(t)
	e.helloRef = testenv.PushHelloImage(t, e.reg)
	opts.Containerd, opts.InsecureRegistries = e.ctd, append(opts.InsecureRegistries, e.reg.Addr)
	e.srv = testenv.StartServer(t, opts)
	e.ctr = e.ctd.Client(t)
	e.connect(t, e.srv.Client.Token, uuid.NewString())
	return e
}

// as returns an env on the same installation for another principal
// (bearer token) and subscription, with a resource group of its own.
func (e *env) as(t *testing.T, token, sub string) *env {
	t.Helper()
	c := *e
	c.connect(t, token, sub)
	return &c
}

// connect makes SDK clients for token in subscription sub and creates a
// fresh resource group there.
func (e *env) connect(t *testing.T, token, sub string) {
	t.Helper()
	e.token, e.sub = token, sub
	e.rg = "rg-" + randomHex(t, 4)

	opts := e.armOptions()
	cred := staticToken(token)
	var err error
	if e.groups, err = armcontainerinstance.NewContainerGroupsClient(e.sub, cred, opts); err != nil {
		t.Fatalf("container groups client: %v", err)
	}
	if e.containers, err = armcontainerinstance.NewContainersClient(e.sub, cred, opts); err != nil {
		t.Fatalf("containers client: %v", err)
	}
	e.createResourceGroup(t)
}

// armOptions points the Azure SDK at the test server.
func (e *env) armOptions() *arm.ClientOptions {
	return &arm.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud: cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: e.srv.Client.Endpoint, Audience: "https://management.core.windows.net/"},
			}},
			Transport: e.srv.HTTPClient(),
			Retry:     policy.RetryOptions{MaxRetries: 2, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: time.Second},
		},
		DisableRPRegistration: true,
	}
}

// staticToken is the server's admin bearer token as an azcore credential.
type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// createResourceGroup PUTs the resource group directly: go.mod has no
// armresources module.
func (e *env) createResourceGroup(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := fmt.Sprintf("/subscriptions/%s/resourcegroups/%s?api-version=2021-04-01", e.sub, e.rg)
	resp, err := e.srv.DoAs(ctx, e.token, http.MethodPut, path, map[string]string{"location": "westus"})
	if err != nil {
		t.Fatalf("create resource group: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("create resource group: got %s: %s", resp.Status, body)
	}
}

// helloGroup is the acceptance test's group: one hello container, 1 CPU,
// 0.5 GB, port 80 published on a public IP, restart policy Always.
func helloGroup(image string) armcontainerinstance.ContainerGroup {
	return armcontainerinstance.ContainerGroup{
		Location: to.Ptr("westus"),
		Properties: &armcontainerinstance.ContainerGroupPropertiesProperties{
			OSType:        to.Ptr(armcontainerinstance.OperatingSystemTypesLinux),
			RestartPolicy: to.Ptr(armcontainerinstance.ContainerGroupRestartPolicyAlways),
			Containers: []*armcontainerinstance.Container{{
				Name: to.Ptr("hello"),
				Properties: &armcontainerinstance.ContainerProperties{
					Image: to.Ptr(image),
					Resources: &armcontainerinstance.ResourceRequirements{
						Requests: &armcontainerinstance.ResourceRequests{CPU: to.Ptr(1.0), MemoryInGB: to.Ptr(0.5)},
					},
					Ports: []*armcontainerinstance.ContainerPort{{Port: to.Ptr[int32](80), Protocol: to.Ptr(armcontainerinstance.ContainerNetworkProtocolTCP)}},
				},
			}},
			IPAddress: &armcontainerinstance.IPAddress{
				Type:  to.Ptr(armcontainerinstance.ContainerGroupIPAddressTypePublic),
				Ports: []*armcontainerinstance.Port{{Port: to.Ptr[int32](80), Protocol: to.Ptr(armcontainerinstance.ContainerGroupNetworkProtocolTCP)}},
			},
		},
	}
}

// create runs BeginCreateOrUpdate to completion. It registers a cleanup
// that deletes the group if the test did not, so that a failing test leaves
// no network attachment behind.
func (e *env) create(ctx context.Context, t *testing.T, name string, cg armcontainerinstance.ContainerGroup) (armcontainerinstance.ContainerGroup, error) {
	t.Helper()
	t.Cleanup(func() { e.deleteIfExists(t, name) })
	poller, err := e.groups.BeginCreateOrUpdate(ctx, e.rg, name, cg, nil)
	if err != nil {
		return armcontainerinstance.ContainerGroup{}, fmt.Errorf("begin create: %w", err)
	}
	resp, err := poller.PollUntilDone(ctx, pollEvery)
	if err != nil {
		return armcontainerinstance.ContainerGroup{}, fmt.Errorf("poll create: %w", err)
	}
	return resp.ContainerGroup, nil
}

// remove runs BeginDelete to completion.
func (e *env) remove(ctx context.Context, name string) error {
	poller, err := e.groups.BeginDelete(ctx, e.rg, name, nil)
	if err != nil {
		return fmt.Errorf("begin delete: %w", err)
	}
	if _, err := poller.PollUntilDone(ctx, pollEvery); err != nil {
		return fmt.Errorf("poll delete: %w", err)
	}
	return nil
}

func (e *env) deleteIfExists(t *testing.T, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.groups.Get(ctx, e.rg, name, nil); isNotFound(err) {
		return
	}
	if err := e.remove(ctx, name); err != nil && !isNotFound(err) {
		t.Logf("cleanup: delete group %s: %v", name, err)
	}
}

func isNotFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// waitRunning polls Get until the group's first container is Running.
func (e *env) waitRunning(ctx context.Context, t *testing.T, name string) armcontainerinstance.ContainerGroup {
	t.Helper()
	var last armcontainerinstance.ContainerGroup
	for {
		resp, err := e.groups.Get(ctx, e.rg, name, nil)
		if err == nil {
			last = resp.ContainerGroup
			if containerState(last) == "Running" {
				return last
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s not Running: last error %v, last state %q, provisioning %q", name, err, containerState(last), provisioningState(last))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func provisioningState(cg armcontainerinstance.ContainerGroup) string {
	if cg.Properties == nil || cg.Properties.ProvisioningState == nil {
		return ""
	}
	return *cg.Properties.ProvisioningState
}

// containerState is the first container's instanceView currentState.state.
func containerState(cg armcontainerinstance.ContainerGroup) string {
	if cg.Properties == nil || len(cg.Properties.Containers) == 0 {
		return ""
	}
	c := cg.Properties.Containers[0]
	if c.Properties == nil || c.Properties.InstanceView == nil || c.Properties.InstanceView.CurrentState == nil || c.Properties.InstanceView.CurrentState.State == nil {
		return ""
	}
	return *c.Properties.InstanceView.CurrentState.State
}

func groupIP(cg armcontainerinstance.ContainerGroup) string {
	if cg.Properties == nil || cg.Properties.IPAddress == nil || cg.Properties.IPAddress.IP == nil {
		return ""
	}
	return *cg.Properties.IPAddress.IP
}

// eventMessages returns every event message of the group and its
// containers.
func eventMessages(cg armcontainerinstance.ContainerGroup) []string {
	var out []string
	add := func(evs []*armcontainerinstance.Event) {
		for _, ev := range evs {
			if ev != nil && ev.Message != nil {
				out = append(out, *ev.Message)
			}
		}
	}
	if cg.Properties == nil {
		return nil
	}
	if cg.Properties.InstanceView != nil {
		add(cg.Properties.InstanceView.Events)
	}
	for _, c := range cg.Properties.Containers {
		if c.Properties != nil && c.Properties.InstanceView != nil {
			add(c.Properties.InstanceView.Events)
		}
	}
	return out
}

// fetchPage GETs http://ip:80/ until it answers 200 or ctx ends; the server
// may be a moment behind the Running state.
func fetchPage(ctx context.Context, ip string) (string, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip+":80/", nil)
		if err != nil {
			return "", err
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(body), nil
			}
			err = fmt.Errorf("got %s: %s", resp.Status, body)
		}
		last = err
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("GET http://%s:80/: %w", ip, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// logsContain polls ListLogs until the container's log holds want.
func (e *env) logsContain(ctx context.Context, name, container, want string) (string, error) {
	var content string
	var last error
	for {
		resp, err := e.containers.ListLogs(ctx, e.rg, name, container, nil)
		if err == nil {
			content = ""
			if resp.Content != nil {
				content = *resp.Content
			}
			if strings.Contains(content, want) {
				return content, nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return content, fmt.Errorf("log of %s/%s lacks %q (last error %v): %q", name, container, want, last, content)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// listNames collects the names from every page of a list pager.
func listNames[T any](ctx context.Context, pager *runtime.Pager[T], page func(T) []*armcontainerinstance.ContainerGroup) ([]string, error) {
	var names []string
	for pager.More() {
		p, err := pager.NextPage(ctx)
		if err != nil {
			return names, err
		}
		for _, cg := range page(p) {
			if cg != nil && cg.Name != nil {
				names = append(names, *cg.Name)
			}
		}
	}
	return names, nil
}

// runtimeState is what containerd holds in the berth namespace.
type runtimeState struct {
	containers map[string]string // container ID -> snapshot key
	tasks      map[string]uint32 // container ID -> pid, running tasks
	statuses   map[string]string
	active     []string // keys of active (container rootfs) snapshots
}

func (e *env) runtimeState(ctx context.Context, t *testing.T) runtimeState {
	t.Helper()
	ctx = namespaces.WithNamespace(ctx, berthNamespace)
	st := runtimeState{containers: map[string]string{}, tasks: map[string]uint32{}, statuses: map[string]string{}}
	ctrs, err := e.ctr.ContainerService().List(ctx)
	if err != nil {
		t.Fatalf("list containerd containers: %v", err)
	}
	for _, c := range ctrs {
		st.containers[c.ID] = c.SnapshotKey
	}
	tasks, err := e.ctr.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		t.Fatalf("list containerd tasks: %v", err)
	}
	for _, task := range tasks.Tasks {
		st.tasks[task.ID] = task.Pid
		st.statuses[task.ID] = task.Status.String()
	}
	err = e.ctr.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindActive {
			st.active = append(st.active, info.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk snapshots: %v", err)
	}
	return st
}

// netnsLeftovers lists what is still in DataDir/netns and what is mounted
// below it.
func (e *env) netnsLeftovers(t *testing.T) (files, mounts []string) {
	t.Helper()
	dir := filepath.Join(e.srv.DataDir, "netns")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read %s: %v", dir, err)
	}
	for _, en := range entries {
		files = append(files, en.Name())
	}
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatalf("read mounts: %v", err)
	}
	for _, m := range ms {
		mounts = append(mounts, m.Mountpoint)
	}
	return files, mounts
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// logExcerpt returns the server log lines that mention any of words, to
// attach to a failure message.
func (e *env) logExcerpt(words ...string) string {
	var out []string
	for _, line := range strings.Split(e.srv.Log(), "\n") {
		if slices.ContainsFunc(words, func(w string) bool { return strings.Contains(line, w) }) {
			out = append(out, line)
		}
	}
	if len(out) > 40 {
		out = out[len(out)-40:]
	}
	return strings.Join(out, "\n")
}

// checkHostClean fails t if the server left, after the test's groups were
// deleted, a file or mount in its netns directory or an iptables rule for
// an address of its subnet.
func (e *env) checkHostClean(t *testing.T) {
	t.Helper()
	files, mounts := e.netnsLeftovers(t)
	if len(files) > 0 {
		t.Errorf("files left in %s/netns: %v", e.srv.DataDir, files)
	}
	if len(mounts) > 0 {
		t.Errorf("mounts left: %v", mounts)
	}
	rules, err := testenv.RulesNamingHosts(e.srv.Subnet)
	if err != nil {
		t.Fatalf("read iptables: %v", err)
	}
	if len(rules) > 0 {
		t.Errorf("iptables rules left for addresses of %s:\n%s", e.srv.Subnet, strings.Join(rules, "\n"))
	}
}
