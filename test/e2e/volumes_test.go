package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/imagebuild"
	"github.com/berth-dev/berth/internal/testenv"
)

// volBusybox is a small busybox container running script with sh. The
// shell is PID 1, which ignores SIGTERM unless it traps it: the trap lets a
// delete finish without the 10 s grace period.
func volBusybox(name, image, script string, mounts ...*armcontainerinstance.VolumeMount) *armcontainerinstance.Container {
	script = "trap 'exit 0' TERM\n" + script
	return &armcontainerinstance.Container{
		Name: to.Ptr(name),
		Properties: &armcontainerinstance.ContainerProperties{
			Image:   to.Ptr(image),
			Command: []*string{to.Ptr("/bin/sh"), to.Ptr("-c"), to.Ptr(script)},
			Resources: &armcontainerinstance.ResourceRequirements{
				Requests: &armcontainerinstance.ResourceRequests{CPU: to.Ptr(0.2), MemoryInGB: to.Ptr(0.2)},
			},
			VolumeMounts: mounts,
		},
	}
}

func volMount(volume, path string, readOnly bool) *armcontainerinstance.VolumeMount {
	m := &armcontainerinstance.VolumeMount{Name: to.Ptr(volume), MountPath: to.Ptr(path)}
	if readOnly {
		m.ReadOnly = to.Ptr(true)
	}
	return m
}

// volGroup is a Linux group of containers with restart policy Never.
func volGroup(containers ...*armcontainerinstance.Container) armcontainerinstance.ContainerGroup {
	return armcontainerinstance.ContainerGroup{
		Location: to.Ptr("westus"),
		Properties: &armcontainerinstance.ContainerGroupPropertiesProperties{
			OSType:        to.Ptr(armcontainerinstance.OperatingSystemTypesLinux),
			RestartPolicy: to.Ptr(armcontainerinstance.ContainerGroupRestartPolicyNever),
			Containers:    containers,
		},
	}
}

// volumeEnv is an env with the busybox image pushed to its registry.
func volumeEnv(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t)
	return e, testenv.PushBusyboxImage(t, e.reg)
}

// volCreate creates the group and fails t, with the server's view, if the
// create does not succeed.
func (e *env) volCreate(ctx context.Context, t *testing.T, name string, cg armcontainerinstance.ContainerGroup) armcontainerinstance.ContainerGroup {
	t.Helper()
	got, err := e.create(ctx, t, name, cg)
	if err != nil {
		t.Fatalf("create %s: %v\nserver log:\n%s", name, err, e.logExcerpt("level=ERROR", "level=WARN", name))
	}
	return got
}

// volRawJSON GETs path (below the endpoint) and returns the body of a 200.
func (e *env) volRawJSON(ctx context.Context, t *testing.T, path string) string {
	t.Helper()
	resp, err := e.srv.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %s: %s", path, resp.Status, b)
	}
	return string(b)
}

func (e *env) volGroupPath(name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerInstance/containerGroups/%s?api-version=2023-05-01", e.sub, e.rg, name)
}

// volResponses returns the raw JSON of every response that describes the
// group: its GET and both lists.
func (e *env) volResponses(ctx context.Context, t *testing.T, name string) map[string]string {
	t.Helper()
	return map[string]string{
		"get":                    e.volRawJSON(ctx, t, e.volGroupPath(name)),
		"list":                   e.volRawJSON(ctx, t, fmt.Sprintf("/subscriptions/%s/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01", e.sub)),
		"list by resource group": e.volRawJSON(ctx, t, fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01", e.sub, e.rg)),
	}
}

// volRemove deletes the group and checks that the server left
// no mount and no group files under its data dir.
func (e *env) volRemove(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	if err := e.remove(ctx, name); err != nil {
		t.Fatalf("delete %s: %v\nserver log:\n%s", name, err, e.logExcerpt("level=ERROR", "level=WARN", name))
	}
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(e.srv.DataDir))
	if err != nil {
		t.Fatalf("read mounts: %v", err)
	}
	for _, m := range ms {
		t.Errorf("mount left after delete: %s (%s)", m.Mountpoint, m.FSType)
	}
	entries, err := os.ReadDir(filepath.Join(e.srv.DataDir, "groups"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, en := range entries {
		t.Errorf("group files left after delete: %s", en.Name())
	}
	e.checkHostClean(t)
}

// TestVolumes_EmptyDirSharedAndReadOnly: two containers share an emptyDir;
// what one writes the other reads, through a read-only mount that refuses
// writes.
func TestVolumes_EmptyDirSharedAndReadOnly(t *testing.T) {
	t.Parallel()
	e, image := volumeEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	name := "emptydir-" + randomHex(t, 3)

	cg := volGroup(
		volBusybox("writer", image, "echo shared-data-4711 > /data/hello.txt && echo wrote; sleep 3600 & wait", volMount("shared", "/data", false)),
		volBusybox("reader", image, `while [ ! -f /shared/hello.txt ]; do sleep 0.2; done
cat /shared/hello.txt
if touch /shared/intruder 2>/dev/null; then echo WRITE-ALLOWED; else echo WRITE-REFUSED; fi
sleep 3600 & wait`, volMount("shared", "/shared", true)),
	)
	cg.Properties.Volumes = []*armcontainerinstance.Volume{{Name: to.Ptr("shared"), EmptyDir: map[string]any{}}}
	got := e.volCreate(ctx, t, name, cg)
	if vs := got.Properties.Volumes; len(vs) != 1 || vs[0].EmptyDir == nil {
		t.Errorf("got volumes %+v, want the emptyDir volume back", vs)
	}

	logCtx, cancelLog := context.WithTimeout(ctx, time.Minute)
	defer cancelLog()
	log, err := e.logsContain(logCtx, name, "reader", "WRITE-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, "shared-data-4711") {
		t.Errorf("reader's log %q lacks what the writer wrote", log)
	}
	if !strings.Contains(log, "WRITE-REFUSED") {
		t.Errorf("reader's log %q: a write through the readOnly mount was not refused", log)
	}
	e.volRemove(ctx, t, name)
}

// TestVolumes_Secret: a secret volume's files reach the container, read
// only, on a tmpfs, and their contents appear in no API response and in no
// file of the server's data dir.
func TestVolumes_Secret(t *testing.T) {
	t.Parallel()
	e, image := volumeEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	name := "secret-" + randomHex(t, 3)
	secret := "s3cr3t-" + randomHex(t, 8)
	encoded := base64.StdEncoding.EncodeToString([]byte(secret))

	cg := volGroup(volBusybox("app", image, `cat /mnt/secret/token; echo
stat -c 'mode=%a' /mnt/secret/token
grep ' /mnt/secret ' /proc/mounts
if touch /mnt/secret/new 2>/dev/null; then echo WRITE-ALLOWED; else echo WRITE-REFUSED; fi
echo done
sleep 3600 & wait`, volMount("creds", "/mnt/secret", true)))
	cg.Properties.Volumes = []*armcontainerinstance.Volume{{Name: to.Ptr("creds"), Secret: map[string]*string{"token": to.Ptr(encoded)}}}
	got := e.volCreate(ctx, t, name, cg)

	logCtx, cancelLog := context.WithTimeout(ctx, time.Minute)
	defer cancelLog()
	log, err := e.logsContain(logCtx, name, "app", "done")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{secret, "mode=444", "WRITE-REFUSED"} {
		if !strings.Contains(log, want) {
			t.Errorf("container log %q lacks %q", log, want)
		}
	}
	var mountLine string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, " /mnt/secret ") {
			mountLine = line
		}
	}
	// Under gVisor the sandbox's gofer serves the host's tmpfs to the
	// container as a 9p mount; the next subtest checks the host side.
	want := map[string]string{"runc": "tmpfs", "sandboxed": "9p"}[e.isolation]
	if f := strings.Fields(mountLine); len(f) < 3 || f[2] != want {
		t.Errorf("/proc/mounts line of /mnt/secret is %q, want %s under %s", mountLine, want, e.isolation)
	}

	t.Run("no API response holds the secret", func(t *testing.T) {
		if vs := got.Properties.Volumes; len(vs) != 1 || vs[0].Secret == nil || len(vs[0].Secret) != 0 {
			t.Errorf("create returned volumes %+v, want the secret volume as {}", vs)
		}
		for what, body := range e.volResponses(ctx, t, name) {
			if strings.Contains(body, secret) || strings.Contains(body, encoded) {
				t.Errorf("%s response holds the secret: %s", what, body)
			}
			if strings.Contains(body, `"token"`) {
				t.Errorf("%s response names the secret's file: %s", what, body)
			}
		}
		if body := e.volRawJSON(ctx, t, e.volGroupPath(name)); !strings.Contains(body, `"secret":{}`) {
			t.Errorf("GET response lacks the secret volume as \"secret\":{}: %s", body)
		}
	})

	t.Run("the secret is on no disk file of the agent", func(t *testing.T) {
		root := filepath.Join(e.srv.DataDir, "groups")
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			var st unix.Statfs_t
			if err := unix.Statfs(p, &st); err != nil {
				return err
			}
			if st.Type == unix.TMPFS_MAGIC {
				return nil // the secret volume itself
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if strings.Contains(string(b), secret) || strings.Contains(string(b), encoded) {
				t.Errorf("%s holds the secret", p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	e.volRemove(ctx, t, name)
}

// TestVolumes_GitRepo: gitRepo volumes from a repository served by git
// daemon on loopback, one pinned to the first of two commits in a
// subdirectory, one at the head in the volume's root; and a repository
// that cannot be cloned fails the group.
func TestVolumes_GitRepo(t *testing.T) {
	t.Parallel()
	e, image := volumeEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	repo := testenv.ServeGitRepo(t, "site", []testenv.GitCommit{
		{Message: "first", Files: map[string]string{"index.html": "version-one\n"}},
		{Message: "second", Files: map[string]string{"index.html": "version-two\n"}},
	})
	name := "gitrepo-" + randomHex(t, 3)

	cg := volGroup(volBusybox("web", image, `echo "pinned=$(cat /src/pinned/site/index.html)"
echo "head=$(cat /src/head/index.html)"
echo done
sleep 3600 & wait`, volMount("pinned", "/src/pinned", true), volMount("head", "/src/head", false)))
	cg.Properties.Volumes = []*armcontainerinstance.Volume{
		{Name: to.Ptr("pinned"), GitRepo: &armcontainerinstance.GitRepoVolume{Repository: to.Ptr(repo.URL), Directory: to.Ptr("site"), Revision: to.Ptr(repo.Commits[0])}},
		{Name: to.Ptr("head"), GitRepo: &armcontainerinstance.GitRepoVolume{Repository: to.Ptr(repo.URL), Directory: to.Ptr(".")}},
	}
	got := e.volCreate(ctx, t, name, cg)
	if vs := got.Properties.Volumes; len(vs) != 2 || vs[0].GitRepo == nil || vs[0].GitRepo.Revision == nil || *vs[0].GitRepo.Revision != repo.Commits[0] {
		t.Errorf("got volumes %+v, want the gitRepo volumes back", vs)
	}
	logCtx, cancelLog := context.WithTimeout(ctx, time.Minute)
	defer cancelLog()
	log, err := e.logsContain(logCtx, name, "web", "done")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, "pinned=version-one") {
		t.Errorf("log %q: the pinned volume does not hold the first commit", log)
	}
	if !strings.Contains(log, "head=version-two") {
		t.Errorf("log %q: the head volume does not hold the second commit", log)
	}
	e.volRemove(ctx, t, name)

	t.Run("a repository that cannot be cloned fails the group", func(t *testing.T) {
		name := "gitfail-" + randomHex(t, 3)
		missing := strings.TrimSuffix(repo.URL, "site.git") + "missing.git"
		cg := volGroup(volBusybox("web", image, "sleep 3600 & wait", volMount("src", "/src", false)))
		cg.Properties.Volumes = []*armcontainerinstance.Volume{{Name: to.Ptr("src"), GitRepo: &armcontainerinstance.GitRepoVolume{Repository: to.Ptr(missing)}}}
		_, err := e.create(ctx, t, name, cg)
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.ErrorCode != "GitRepoVolumeFailed" {
			t.Fatalf("create with an unreachable repository: got %v, want error code GitRepoVolumeFailed", err)
		}
		resp, err := e.groups.Get(ctx, e.rg, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := provisioningState(resp.ContainerGroup); s != "Failed" {
			t.Errorf("got provisioningState %q, want Failed", s)
		}
		msgs := strings.Join(eventMessages(resp.ContainerGroup), "\n")
		if !strings.Contains(msgs, missing) {
			t.Errorf("no event names the repository %s: %q", missing, msgs)
		}
		e.volRemove(ctx, t, name)
	})
}

// TestDNSConfig_ResolvConf: the group's dnsConfig is the containers'
// /etc/resolv.conf and comes back in the response.
func TestDNSConfig_ResolvConf(t *testing.T) {
	t.Parallel()
	e, image := volumeEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	name := "dns-" + randomHex(t, 3)

	cg := volGroup(volBusybox("app", image, "cat /etc/resolv.conf; echo done; sleep 3600 & wait"))
	cg.Properties.DNSConfig = &armcontainerinstance.DNSConfiguration{
		NameServers:   []*string{to.Ptr("10.0.0.10"), to.Ptr("10.0.0.11")},
		SearchDomains: to.Ptr("svc.example corp.example"),
		Options:       to.Ptr("ndots:2 timeout:1"),
	}
	got := e.volCreate(ctx, t, name, cg)
	if d := got.Properties.DNSConfig; d == nil || len(d.NameServers) != 2 || d.Options == nil || *d.Options != "ndots:2 timeout:1" {
		t.Errorf("got dnsConfig %+v, want it as sent", d)
	}
	logCtx, cancelLog := context.WithTimeout(ctx, time.Minute)
	defer cancelLog()
	log, err := e.logsContain(logCtx, name, "app", "done")
	if err != nil {
		t.Fatal(err)
	}
	want := "nameserver 10.0.0.10\nnameserver 10.0.0.11\nsearch svc.example corp.example\noptions ndots:2 timeout:1\ndone"
	if !strings.Contains(log, want) {
		t.Errorf("container's resolv.conf:\n%s\nwant:\n%s", log, want)
	}
	e.volRemove(ctx, t, name)
}

// privateBusybox starts a registry that wants basic auth, with a random
// password, and pushes the busybox image to it.
func privateBusybox(t *testing.T) (reg *testenv.Registry, image, user, password string) {
	t.Helper()
	user, password = "berth-puller", "pw-"+randomHex(t, 8)
	reg = testenv.StartRegistryWithAuth(t, user, password)
	img, err := imagebuild.BusyboxImage()
	if err != nil {
		t.Fatalf("build busybox image: %v", err)
	}
	image = reg.Ref("private/busybox:1")
	testenv.PushImage(t, image, img, &imagebuild.Basic{Username: user, Password: password})
	return reg, image, user, password
}

// TestRegistryCredentials: an image in a registry with basic auth cannot
// be pulled without credentials or with a wrong password, and can with the
// right ones; the password appears in no response.
func TestRegistryCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	reg, image, user, password := privateBusybox(t)

	withCreds := func(cg armcontainerinstance.ContainerGroup, pass string) armcontainerinstance.ContainerGroup {
		cg.Properties.ImageRegistryCredentials = []*armcontainerinstance.ImageRegistryCredential{{
			Server: to.Ptr(reg.Addr), Username: to.Ptr(user), Password: to.Ptr(pass),
		}}
		return cg
	}
	// The refused pulls go first: containerd keeps an image once pulled.
	refused := []struct {
		name string
		cg   armcontainerinstance.ContainerGroup
	}{
		{"without credentials", volGroup(volBusybox("app", image, "sleep 3600 & wait"))},
		{"with a wrong password", withCreds(volGroup(volBusybox("app", image, "sleep 3600 & wait")), "wrong-"+password)},
	}
	for _, tt := range refused {
		t.Run(tt.name+" the pull is refused", func(t *testing.T) {
			name := "nocreds-" + randomHex(t, 3)
			_, err := e.create(ctx, t, name, tt.cg)
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.ErrorCode != "InaccessibleImage" {
				t.Fatalf("create: got %v, want error code InaccessibleImage", err)
			}
			resp, err := e.groups.Get(ctx, e.rg, name, nil)
			if err != nil {
				t.Fatal(err)
			}
			msgs := strings.Join(eventMessages(resp.ContainerGroup), "\n")
			t.Logf("events: %s", msgs)
			if !strings.Contains(msgs, image) || !strings.Contains(msgs, "registry credential") || !strings.Contains(strings.ToLower(msgs), "auth") {
				t.Errorf("events do not say that image %s could not be pulled for want of credentials: %q", image, msgs)
			}
			e.volRemove(ctx, t, name)
		})
	}

	t.Run("with credentials the group runs", func(t *testing.T) {
		name := "creds-" + randomHex(t, 3)
		got := e.volCreate(ctx, t, name, withCreds(volGroup(volBusybox("app", image, "echo pulled-with-auth; sleep 3600 & wait")), password))
		if rc := got.Properties.ImageRegistryCredentials; len(rc) != 1 || rc[0].Username == nil || *rc[0].Username != user || rc[0].Password != nil {
			t.Errorf("got credentials %+v, want server and username without password", rc)
		}
		logCtx, cancelLog := context.WithTimeout(ctx, time.Minute)
		defer cancelLog()
		if _, err := e.logsContain(logCtx, name, "app", "pulled-with-auth"); err != nil {
			t.Error(err)
		}
		for what, body := range e.volResponses(ctx, t, name) {
			if strings.Contains(body, password) {
				t.Errorf("%s response holds the registry password: %s", what, body)
			}
			if !strings.Contains(body, user) {
				t.Errorf("%s response lacks the registry user name: %s", what, body)
			}
		}
		if strings.Contains(e.srv.Log(), password) {
			t.Errorf("the server log holds the registry password")
		}
		e.volRemove(ctx, t, name)
	})
}

// TestVolumes_Validation: invalid volumes, mounts, credentials and DNS
// settings are refused by the PUT itself, with ARM error codes, and store
// nothing.
func TestVolumes_Validation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	container := func(mounts ...map[string]any) map[string]any {
		return map[string]any{"name": "app", "properties": map[string]any{
			"image":        e.helloRef,
			"resources":    map[string]any{"requests": map[string]any{"cpu": 0.1, "memoryInGB": 0.1}},
			"volumeMounts": mounts,
		}}
	}
	body := func(props map[string]any, mounts ...map[string]any) map[string]any {
		p := map[string]any{"osType": "Linux", "containers": []any{container(mounts...)}}
		for k, v := range props {
			p[k] = v
		}
		return map[string]any{"location": "westus", "properties": p}
	}
	emptyDir := func(name string) map[string]any { return map[string]any{"name": name, "emptyDir": map[string]any{}} }
	vols := func(v ...map[string]any) map[string]any { return map[string]any{"volumes": v} }
	mnt := func(name, path string) map[string]any { return map[string]any{"name": name, "mountPath": path} }

	tests := []struct {
		name string
		body map[string]any
		code string
	}{
		{"unknown volume in a mount", body(vols(emptyDir("a")), mnt("b", "/b")), "InvalidVolumeMount"},
		{"mount path with a colon", body(vols(emptyDir("a")), mnt("a", "/a:b")), "InvalidVolumeMount"},
		{"relative mount path", body(vols(emptyDir("a")), mnt("a", "a")), "InvalidVolumeMount"},
		{"duplicate volume name", body(vols(emptyDir("a"), emptyDir("a"))), "DuplicateVolumeName"},
		{"invalid volume name", body(vols(emptyDir("Bad_Name"))), "InvalidVolumeName"},
		{"volume of no kind", body(vols(map[string]any{"name": "a"})), "InvalidVolume"},
		{"secret that is not base64", body(vols(map[string]any{"name": "s", "secret": map[string]string{"k": "%%%not-base64"}})), "InvalidSecretVolume"},
		{"azureFile", body(vols(map[string]any{"name": "f", "azureFile": map[string]any{"shareName": "share", "storageAccountName": "acct", "storageAccountKey": "a2V5"}})), "AzureFileVolumeNotSupported"},
		{"gitRepo directory with ..", body(vols(map[string]any{"name": "g", "gitRepo": map[string]any{"repository": "https://example.com/r.git", "directory": "../x"}})), "InvalidGitRepoVolume"},
		{"gitRepo without repository", body(vols(map[string]any{"name": "g", "gitRepo": map[string]any{"directory": "x"}})), "InvalidGitRepoVolume"},
		{"registry server with a scheme", body(map[string]any{"imageRegistryCredentials": []any{map[string]any{"server": "https://r.example.com", "username": "u", "password": "p"}}}), "InvalidImageRegistryCredential"},
		{"registry credential without password", body(map[string]any{"imageRegistryCredentials": []any{map[string]any{"server": "r.example.com", "username": "u"}}}), "InvalidImageRegistryCredential"},
		{"registry identity", body(map[string]any{"imageRegistryCredentials": []any{map[string]any{"server": "r.azurecr.io", "identity": "/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z"}}}), "RegistryIdentityNotSupported"},
		{"dnsConfig without name servers", body(map[string]any{"dnsConfig": map[string]any{"searchDomains": "a.example"}}), "InvalidDnsConfig"},
		{"dnsConfig name server not an IP", body(map[string]any{"dnsConfig": map[string]any{"nameServers": []string{"dns.example"}}}), "InvalidDnsConfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "invalid-" + randomHex(t, 3)
			resp, err := e.srv.Do(ctx, http.MethodPut, e.volGroupPath(name), tt.body)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var armErr struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(b, &armErr); err != nil || resp.StatusCode != http.StatusBadRequest || armErr.Error.Code != tt.code {
				t.Errorf("got %s %s, want 400 with code %s", resp.Status, b, tt.code)
			}
			if armErr.Error.Message == "" {
				t.Errorf("error %s has no message", armErr.Error.Code)
			}
			if _, err := e.groups.Get(ctx, e.rg, name, nil); !isNotFound(err) {
				t.Errorf("GET after the refused PUT: got %v, want 404", err)
			}
		})
	}
}
