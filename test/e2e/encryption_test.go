package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
)

// TestEncryption: with --encryption-key-file, a group's secure environment
// value, secret volume file and registry password reach the container, yet
// no file of the embedded etcd and no line of the server log holds them;
// the same server without the key refuses to read the group with
// EncryptionKeyUnavailable, and with the key again runs and restarts it
// with the right secrets. (issue 7)
func TestEncryption(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	keyID := hex.EncodeToString(sum[:])[:8]
	keyFile := filepath.Join(t.TempDir(), "encryption.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyArgs := []string{"--encryption-key-file", keyFile}
	e := newEnvWith(t, keyArgs)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	reg, image, user, password := privateBusybox(t)

	envSecret := "envsecret-" + randomHex(t, 8)
	fileSecret := "filesecret-" + randomHex(t, 8)
	marker := "plainmarker-" + randomHex(t, 8)
	secrets := map[string]string{"secure env value": envSecret, "secret file": fileSecret, "registry password": password}

	// Each start of the container prints one line, told apart by uptime.
	cg := volGroup(volBusybox("app", image,
		`echo "run=$(cut -d' ' -f1 /proc/uptime) env=$SECRET file=$(cat /mnt/secret/token) marker=$MARKER"
sleep 3600 & wait`, volMount("creds", "/mnt/secret", false)))
	cg.Properties.Containers[0].Properties.EnvironmentVariables = []*armcontainerinstance.EnvironmentVariable{
		{Name: to.Ptr("SECRET"), SecureValue: to.Ptr(envSecret)},
		{Name: to.Ptr("MARKER"), Value: to.Ptr(marker)},
	}
	cg.Properties.Volumes = []*armcontainerinstance.Volume{{Name: to.Ptr("creds"), Secret: map[string]*string{
		"token": to.Ptr(base64.StdEncoding.EncodeToString([]byte(fileSecret))),
	}}}
	cg.Properties.ImageRegistryCredentials = []*armcontainerinstance.ImageRegistryCredential{{
		Server: to.Ptr(reg.Addr), Username: to.Ptr(user), Password: to.Ptr(password),
	}}
	name := "enc-" + randomHex(t, 3)
	e.volCreate(ctx, t, name, cg)

	wantRun := fmt.Sprintf(" env=%s file=%s marker=%s", envSecret, fileSecret, marker)
	first := e.encRuns(ctx, t, name, 1)
	if !strings.HasSuffix(first[0], wantRun) {
		t.Fatalf("container printed %q, want the decrypted secrets %q", first[0], wantRun)
	}

	e.srv.Stop(t)

	t.Run("no file of etcd holds a secret", func(t *testing.T) {
		etcdDir := filepath.Join(e.srv.DataDir, "etcd")
		needles := map[string]string{"plain marker": marker}
		for what, s := range secrets {
			needles[what] = s
			needles[what+" in base64"] = base64.StdEncoding.EncodeToString([]byte(s))
		}
		found, files := scanTree(t, etcdDir, needles)
		if files == 0 {
			t.Fatalf("no file under %s", etcdDir)
		}
		for what := range needles {
			switch {
			case what == "plain marker" && len(found[what]) == 0:
				t.Errorf("the plain marker %q is in none of the %d files under %s: the scan sees nothing", marker, files, etcdDir)
			case what != "plain marker" && len(found[what]) > 0:
				t.Errorf("the %s is stored in plain text in %v", what, found[what])
			}
		}
	})

	t.Run("the server log holds no secret", func(t *testing.T) {
		log := e.srv.Log()
		if !strings.Contains(log, "key_id="+keyID) && !strings.Contains(log, `"key_id":"`+keyID+`"`) {
			t.Errorf("the server log does not name key %s", keyID)
		}
		for what, s := range secrets {
			if strings.Contains(log, s) || strings.Contains(log, base64.StdEncoding.EncodeToString([]byte(s))) {
				t.Errorf("the server log holds the %s", what)
			}
		}
	})

	t.Run("without the key the server refuses to read the group", func(t *testing.T) {
		e.srv.SetExtraArgs(nil)
		e.srv.Restart(t)
		for what, path := range map[string]string{
			"get":  e.volGroupPath(name),
			"list": fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01", e.sub, e.rg),
		} {
			status, body := e.encRaw(ctx, t, path)
			var eb struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			_ = json.Unmarshal([]byte(body), &eb)
			if status != http.StatusInternalServerError || eb.Error.Code != "EncryptionKeyUnavailable" ||
				!strings.Contains(eb.Error.Message, keyID) || !strings.Contains(eb.Error.Message, "--encryption-key-file") {
				t.Errorf("%s: got %d %s, want 500 EncryptionKeyUnavailable naming key %s and the flag", what, status, body, keyID)
			}
			for what, s := range secrets {
				if strings.Contains(body, s) {
					t.Errorf("the answer holds the %s", what)
				}
			}
		}
		e.srv.Stop(t)
	})

	e.srv.SetExtraArgs(keyArgs)
	e.srv.Restart(t)

	t.Run("with the key again the group runs and restarts with its secrets", func(t *testing.T) {
		got := e.until(ctx, t, name, "Running", func(cg cgSpec) bool { return containerState(cg) == "Running" })
		started := *view(got, "app").CurrentState.StartTime
		rp, err := e.groups.BeginRestart(ctx, e.rg, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.PollUntilDone(ctx, pollEvery); err != nil {
			t.Fatal(err)
		}
		e.until(ctx, t, name, "restarted", func(cg cgSpec) bool {
			iv := view(cg, "app")
			return iv.CurrentState != nil && iv.CurrentState.StartTime != nil && iv.CurrentState.StartTime.After(started)
		})
		runs := e.encRuns(ctx, t, name, 2)
		last := runs[len(runs)-1]
		if last == first[0] {
			t.Fatalf("no new run of the container after the restart: %q", runs)
		}
		if !strings.HasSuffix(last, wantRun) {
			t.Errorf("restarted container printed %q, want %q", last, wantRun)
		}
	})
	e.volRemove(ctx, t, name)
}

// encRuns waits until the container's log holds a "run=" line that differs
// from those before, when n > 1, and returns those lines. A log may or may
// not keep the output of earlier runs, so n counts distinct lines seen
// across polls.
func (e *env) encRuns(ctx context.Context, t *testing.T, name string, n int) []string {
	t.Helper()
	seen := map[string]bool{}
	var runs []string
	pollCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if resp, err := e.containers.ListLogs(pollCtx, e.rg, name, "app", nil); err == nil && resp.Content != nil {
			for _, line := range strings.Split(*resp.Content, "\n") {
				if strings.HasPrefix(line, "run=") && !seen[line] {
					seen[line] = true
					runs = append(runs, line)
				}
			}
		}
		if len(runs) >= n {
			return runs
		}
		select {
		case <-pollCtx.Done():
			t.Fatalf("container of %s printed %d runs, want %d: %q", name, len(runs), n, runs)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// encRaw GETs path and returns the status and body.
func (e *env) encRaw(ctx context.Context, t *testing.T, path string) (int, string) {
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
	return resp.StatusCode, string(b)
}

// scanTree reads every regular file under root and returns, for each
// needle, the files that hold it, and how many files it read.
func scanTree(t *testing.T, root string, needles map[string]string) (map[string][]string, int) {
	t.Helper()
	found := map[string][]string{}
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for what, s := range needles {
			if bytes.Contains(b, []byte(s)) {
				found[what] = append(found[what], p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	return found, files
}
