package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testenv"
)

var cliUpdate = flag.Bool("update", false, "rewrite the golden files of the CLI tests")

// cliEnv is a Berth installation driven only through the berth binary, as a
// user at a terminal would: its own server, registry and config file.
type cliEnv struct {
	t          *testing.T
	binary     string
	config     string
	srv        *testenv.Server
	reg        *testenv.Registry
	helloRef   string
	busyboxRef string
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	testenv.RequireRoot(t)
	e := &cliEnv{t: t, binary: testenv.BuildBerth(t)}
	ctd := testenv.StartContainerd(t)
	e.reg = testenv.StartRegistry(t)
	e.helloRef = testenv.PushHelloImage(t, e.reg)
	e.busyboxRef = testenv.PushBusyboxImage(t, e.reg)
	e.srv = testenv.StartServer(t, testenv.ServerOptions{Containerd: ctd, InsecureRegistries: []string{e.reg.Addr}})
	dir := t.TempDir()
	e.config = filepath.Join(dir, "home", ".berth", "config.json")
	clientJSON := filepath.Join(dir, "client.json")
	b, err := json.Marshal(e.srv.Client)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(clientJSON, b, 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("login", "--config", clientJSON)
	return e
}

// berth runs the binary with the test's config and returns stdout, stderr
// and the exit code.
func (e *cliEnv) berth(args ...string) (string, string, int) {
	e.t.Helper()
	return e.berthIn("", args...)
}

// berthIn is berth with stdin.
func (e *cliEnv) berthIn(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.binary, args...)
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+e.config)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, &stderr, strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("berth %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// ok runs berth and fails the test unless it exits 0.
func (e *cliEnv) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.berth(args...)
	if code != 0 {
		e.t.Fatalf("berth %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// okJSON runs berth and decodes its JSON output.
func (e *cliEnv) okJSON(args ...string) map[string]any {
	e.t.Helper()
	out := e.ok(args...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("berth %s: output is not a JSON object: %v\n%s", strings.Join(args, " "), err, out)
	}
	return m
}

// deleteAtEnd deletes the group when the test ends, so that a failing test
// leaves no network attachment behind.
func (e *cliEnv) deleteAtEnd(rg, name string) {
	e.t.Cleanup(func() { e.berth("container", "delete", "-g", rg, "-n", name, "--yes") })
}

// path follows keys and indexes through decoded JSON.
func cliPath(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func cliStr(v any, keys ...any) string {
	s, _ := cliPath(v, keys...).(string)
	return s
}

// Volatile parts of outputs, replaced before comparing with golden files.
var cliVolatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "TIME"},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "REGISTRY"},
	{regexp.MustCompile(`\b10\.\d+\.\d+\.\d+\b`), "IP"},
	{regexp.MustCompile(`sha256:[0-9a-f]{64}`), "sha256:DIGEST"},
	// The group's isolation event names the server's level.
	{regexp.MustCompile(`isolation: (runc|sandboxed)[^"'\n]*`), "isolation: LEVEL"},
}

var (
	cliSpaceRun = regexp.MustCompile(` {2,}`)
	cliDashRun  = regexp.MustCompile(`-{3,}`)
)

// normalize replaces the volatile parts of out. Table columns are as wide
// as their longest value, so table output also gets its runs of spaces and
// dashes collapsed (the unit tests check alignment).
func cliNormalize(out, format string) string {
	for _, v := range cliVolatile {
		out = v.re.ReplaceAllString(out, v.with)
	}
	if format == "table" {
		out = cliDashRun.ReplaceAllString(cliSpaceRun.ReplaceAllString(out, "  "), "---")
	}
	return out
}

// golden compares got with testdata/cli/name, or rewrites it with -update.
func cliGolden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", "cli", name)
	if *cliUpdate {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run with -update if the change is right)\n--- got:\n%s\n--- want:\n%s", name, got, want)
	}
}

var cliOutputFormats = []string{"json", "jsonc", "yaml", "table", "tsv"}

// TestCLI_CreateShowLogsExportDelete is the CLI's acceptance test: a group
// created with flags serves its page, show and list print it in every
// format (golden files), logs has its requests, an export creates an equal
// group, and delete removes it.
func TestCLI_CreateShowLogsExportDelete(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	const rg, name = "cli-demo", "hello"

	e.ok("configure", "--defaults", "group="+rg)
	if m := e.okJSON("group", "create", "-n", rg); cliStr(m, "location") != "westus" || cliStr(m, "name") != rg {
		t.Errorf("group create: got %v, want %s in westus", m, rg)
	}
	if out := e.ok("group", "list", "--query", "[].name", "-o", "tsv"); out != rg+"\n" {
		t.Errorf("group list: got %q", out)
	}

	// No -g: the configured default group applies.
	e.deleteAtEnd(rg, name)
	g := e.okJSON("container", "create", "-n", name, "--image", e.helloRef,
		"--cpu", "1", "--memory", "0.5", "--ports", "80", "--ip-address", "Public",
		"--environment-variables", "GREETING=hi", "MODE=test", "--restart-policy", "Always")
	if s := cliStr(g, "properties", "provisioningState"); s != "Succeeded" {
		t.Fatalf("create: provisioningState %q, want Succeeded:\n%v", s, g)
	}
	ip := cliStr(g, "properties", "ipAddress", "ip")
	if ip == "" {
		t.Fatalf("create: no IP in %v", g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	page, err := fetchPage(ctx, ip)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page, "Hello from Berth") {
		t.Errorf("page at %s: %q", ip, page)
	}
	if got := strings.TrimSpace(e.ok("container", "show", "-n", name, "--query", "properties.ipAddress.ip", "-o", "tsv")); got != ip {
		t.Errorf("show --query ip: got %q, want %s", got, ip)
	}

	// Wait until the container runs so that show's instance view is stable.
	deadline := time.Now().Add(time.Minute)
	for cliStr(e.okJSON("container", "show", "-n", name), "properties", "containers", 0, "properties", "instanceView", "currentState", "state") != "Running" {
		if time.Now().After(deadline) {
			t.Fatal("container never reported Running")
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, f := range cliOutputFormats {
		cliGolden(t, "show."+f, cliNormalize(e.ok("container", "show", "-g", rg, "-n", name, "-o", f), f))
		cliGolden(t, "list."+f, cliNormalize(e.ok("container", "list", "-g", rg, "-o", f), f))
	}

	logs := e.ok("container", "logs", "-n", name)
	if !strings.Contains(logs, "hello: listening on :80") || !strings.Contains(logs, "hello: GET / HTTP/1.1") {
		t.Errorf("logs lack the start line or the page request:\n%s", logs)
	}

	// Export, then create from the export in another resource group: the
	// two groups must be equal but for their ids and runtime state.
	file := filepath.Join(t.TempDir(), "hello.yaml")
	e.ok("container", "export", "-n", name, "--file", file)
	e.ok("group", "create", "-n", "cli-copy")
	e.deleteAtEnd("cli-copy", name)
	copied := e.okJSON("container", "create", "-g", "cli-copy", "--file", file)
	orig := e.okJSON("container", "show", "-n", name)
	if a, b := cliComparable(orig), cliComparable(copied); a != b {
		t.Errorf("group created from the export differs:\n--- original:\n%s\n--- from export:\n%s", a, b)
	}

	e.ok("container", "delete", "-g", "cli-copy", "-n", name, "--yes")
	e.ok("container", "delete", "-n", name, "--yes")
	out, errOut, code := e.berth("container", "show", "-n", name)
	if code != 1 || !strings.Contains(errOut, "(ResourceNotFound)") || out != "" {
		t.Errorf("show after delete: exit %d, stdout %q, stderr %q; want exit 1 and az's '(ResourceNotFound) ...'", code, out, errOut)
	}
}

// comparable strips what differs between two incarnations of the same
// group (ids, addresses, runtime state) and returns the rest as JSON.
func cliComparable(g map[string]any) string {
	delete(g, "id")
	delete(g, "resourceGroup")
	props, _ := g["properties"].(map[string]any)
	delete(props, "instanceView")
	if ip, ok := props["ipAddress"].(map[string]any); ok {
		delete(ip, "ip")
	}
	cs, _ := props["containers"].([]any)
	for _, c := range cs {
		if cp, ok := cliPath(c, "properties").(map[string]any); ok {
			delete(cp, "instanceView")
		}
	}
	b, _ := json.MarshalIndent(g, "", "  ")
	return string(b)
}

// TestCLI_YAMLMultiContainer deploys the ACI documentation's multi-container
// YAML example and follows a log.
func TestCLI_YAMLMultiContainer(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	const rg = "cli-yaml"
	e.ok("group", "create", "-n", rg, "-l", "eastus")

	example, err := os.ReadFile(filepath.Join("testdata", "cli", "multi-container.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("IMAGE_APP", e.helloRef, "IMAGE_SIDECAR", e.busyboxRef)
	file := filepath.Join(t.TempDir(), "deploy.yaml")
	if err := os.WriteFile(file, []byte(r.Replace(string(example))), 0o644); err != nil {
		t.Fatal(err)
	}
	e.deleteAtEnd(rg, "mycontainergroup")
	// stderr on a terminal: create shows progress there, and the group
	// still goes to stdout alone.
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	progress := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(ptmx)
		progress <- string(b)
	}()
	cmd := exec.Command(e.binary, "container", "create", "-g", rg, "--file", file)
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+e.config)
	cmd.Stderr = tty
	stdout, err := cmd.Output()
	tty.Close()
	if err != nil {
		t.Fatalf("create --file: %v\n%s", err, stdout)
	}
	var g map[string]any
	if err := json.Unmarshal(stdout, &g); err != nil {
		t.Fatalf("create --file printed no JSON group: %v\n%s", err, stdout)
	}
	select {
	case p := <-progress:
		for _, want := range []string{"aci-tutorial-app: Pulling:", "aci-tutorial-sidecar: Started:"} {
			if !strings.Contains(p, want) {
				t.Errorf("progress on the terminal lacks %q:\n%s", want, p)
			}
		}
	case <-time.After(10 * time.Second):
		t.Error("no end of the terminal output")
	}
	if s := cliStr(g, "properties", "provisioningState"); s != "Succeeded" {
		t.Fatalf("create --file: provisioningState %q:\n%v", s, g)
	}
	if cliStr(g, "location") != "eastus" || cliStr(g, "tags", "exampleTag") != "tutorial" {
		t.Errorf("create --file: location/tags not taken from the file: %v", g)
	}
	names := []string{cliStr(g, "properties", "containers", 0, "name"), cliStr(g, "properties", "containers", 1, "name")}
	if !slices.Equal(names, []string{"aci-tutorial-app", "aci-tutorial-sidecar"}) {
		t.Errorf("containers: got %v", names)
	}
	if m := cliPath(g, "properties", "containers", 0, "properties", "resources", "requests", "memoryInGB"); m != 1.5 {
		t.Errorf("memoryInGb from the file: got %v, want 1.5", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := fetchPage(ctx, cliStr(g, "properties", "ipAddress", "ip")); err != nil {
		t.Fatal(err)
	}

	// A group with several containers needs --container-name.
	_, errOut, code := e.berth("container", "logs", "-g", rg, "-n", "mycontainergroup")
	if code != 2 || !strings.Contains(errOut, "--container-name") {
		t.Errorf("logs without --container-name: exit %d, stderr %q; want a usage error naming --container-name", code, errOut)
	}
	out := e.ok("container", "logs", "-g", rg, "-n", "mycontainergroup", "--container-name", "aci-tutorial-sidecar")
	if !strings.Contains(out, "busybox: started") {
		t.Errorf("sidecar log: %q", out)
	}

	// A name that differs from the file's is refused, as az does.
	_, errOut, code = e.berth("container", "create", "-g", rg, "-n", "other", "--file", file)
	if code != 2 || !strings.Contains(errOut, "do not match") {
		t.Errorf("create --file with another --name: exit %d, stderr %q", code, errOut)
	}
}

// TestCLI_LogsFollow checks that logs --follow prints lines written after
// it started; then exec, attach, stop and start on the same group.
func TestCLI_LogsFollow(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	const rg, name = "cli-follow", "ticker"
	e.ok("group", "create", "-n", rg)
	e.deleteAtEnd(rg, name)
	e.ok("container", "create", "-g", rg, "-n", name, "--image", e.busyboxRef,
		"--command-line", `/bin/sh -c 'trap "exit 0" TERM; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 1 & wait $!; done'`,
		"--cpu", "0.5", "--memory", "0.25")

	cmd := exec.Command(e.binary, "container", "logs", "-g", rg, "-n", name, "--follow")
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+e.config)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The first line printed is whatever the log held at the start; a line
	// numbered 3 more than that can only have come from following.
	var first, last int
	timeout := time.After(90 * time.Second)
	for last < first+3 || first == 0 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("logs --follow ended early: %s", stderr.String())
			}
			var n int
			if _, err := fmt.Sscanf(l, "tick %d", &n); err != nil {
				t.Fatalf("unexpected log line %q", l)
			}
			if first == 0 {
				first = n
			}
			if n != last+1 && last != 0 {
				t.Errorf("line %q follows tick %d", l, last)
			}
			last = n
		case <-timeout:
			t.Fatalf("logs --follow printed up to tick %d from tick %d in 90s; stderr %s", last, first, stderr.String())
		}
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("logs --follow after SIGINT: %v (want exit 0); stderr %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("logs --follow did not end within 10s of SIGINT")
	}

	// exec: stdin is no terminal here, so it is piped as it is.
	out, errOut, code := e.berthIn("echo exec-ok-$((6*7)); exit\n", "container", "exec", "-g", rg, "-n", name, "--exec-command", "/bin/sh")
	if code != 0 || !strings.Contains(out, "exec-ok-42") {
		t.Errorf("exec: exit %d, stdout %q, stderr %q; want exec-ok-42", code, out, errOut)
	}
	// Berth goes further than ACI: the command may carry arguments.
	out, errOut, code = e.berth("container", "exec", "-g", rg, "-n", name, "--exec-command", `/bin/sh -c 'echo "args $((40+2))"'`)
	if code != 0 || !strings.Contains(out, "args 42") {
		t.Errorf("exec with arguments: exit %d, stdout %q, stderr %q; want args 42", code, out, errOut)
	}
	cliExecOnTerminal(t, e, rg, name)

	// attach streams output until interrupted.
	att := exec.Command(e.binary, "container", "attach", "-g", rg, "-n", name)
	att.Env = append(os.Environ(), "BERTH_CONFIG="+e.config)
	attOut, err := att.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	att.Stderr = &stderr
	if err := att.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = att.Process.Kill() })
	attLine := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(attOut)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "tick") {
				attLine <- sc.Text()
				break
			}
		}
		_, _ = io.Copy(io.Discard, attOut)
	}()
	select {
	case <-attLine:
	case <-time.After(30 * time.Second):
		t.Fatalf("attach printed no tick line in 30s; stderr %s", stderr.String())
	}
	_ = att.Process.Signal(syscall.SIGINT)
	if err := att.Wait(); err != nil {
		t.Errorf("attach after SIGINT: %v, want exit 0", err)
	}

	// stop, then start.
	e.ok("container", "stop", "-g", rg, "-n", name)
	deadline := time.Now().Add(time.Minute)
	for cliStr(e.okJSON("container", "show", "-g", rg, "-n", name), "properties", "instanceView", "state") != "Stopped" {
		if time.Now().After(deadline) {
			t.Fatal("group never reported Stopped after stop")
		}
		time.Sleep(500 * time.Millisecond)
	}
	e.ok("container", "start", "-g", rg, "-n", name)
	deadline = time.Now().Add(time.Minute)
	for cliStr(e.okJSON("container", "show", "-g", rg, "-n", name), "properties", "containers", 0, "properties", "instanceView", "currentState", "state") != "Running" {
		if time.Now().After(deadline) {
			t.Fatal("container never reported Running after start")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// cliExecOnTerminal runs an interactive `berth container exec` the way a
// person does: on a real pseudo-terminal of a known size. The remote shell
// must see that size, echo and answer what is typed, and end on "exit"; the
// local terminal must be back in cooked mode afterwards.
func cliExecOnTerminal(t *testing.T, e *cliEnv, rg, name string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 33, Cols: 101}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.binary, "container", "exec", "-g", rg, "-n", name, "--exec-command", "/bin/sh")
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+e.config)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	// The CLI is the terminal's session leader, as under a real shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	var screen bytes.Buffer
	chunks := make(chan []byte)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				chunks <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				close(chunks)
				return
			}
		}
	}()
	// waitFor reads the terminal until want appears on it.
	waitFor := func(want string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for !strings.Contains(screen.String(), want) {
			select {
			case b, ok := <-chunks:
				if !ok {
					t.Fatalf("terminal closed before %q appeared; screen:\n%s", want, screen.String())
				}
				screen.Write(b)
			case <-timeout:
				t.Fatalf("%q did not appear on the terminal in 30s; screen:\n%s", want, screen.String())
			}
		}
	}
	// Typed keys reach the remote shell only once the session is up, and
	// what the shell prints comes back: the arithmetic proves it ran.
	waitFor("# ")
	if _, err := ptmx.Write([]byte("stty size; echo pty-$((6*7))\r")); err != nil {
		t.Fatal(err)
	}
	waitFor("pty-42")
	if !strings.Contains(screen.String(), "33 101") {
		t.Errorf("remote terminal size: want 33 101 on the screen:\n%s", screen.String())
	}
	// Echo comes from the remote terminal alone: in raw mode the local one
	// must not echo, so the typed line appears exactly once.
	if n := strings.Count(screen.String(), "echo pty-$((6*7))"); n != 1 {
		t.Errorf("typed line echoed %d times, want 1 (local terminal not in raw mode?):\n%s", n, screen.String())
	}
	if _, err := ptmx.Write([]byte("exit\r")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exec on a terminal: %v, want exit 0; screen:\n%s", err, screen.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("exec did not end within 30s of exit; screen:\n%s", screen.String())
	}
	st, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if st.Lflag&unix.ECHO == 0 || st.Lflag&unix.ICANON == 0 {
		t.Errorf("local terminal left in raw mode after exec (lflag %#x)", st.Lflag)
	}
}

// cliHelp runs "berth ARGS --help" without a server.
func cliHelp(t *testing.T, binary string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--help")...)
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(t.TempDir(), "none.json"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("berth %s --help: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var helpFlagLine = regexp.MustCompile(`^\s+(-\w, )?--[\w-]+( \w+)?\s{2,}\S`)

// TestCLI_Help walks every command's help: each has a description and a
// usage line, and every flag it lists is described.
func TestCLI_Help(t *testing.T) {
	t.Parallel()
	binary := testenv.BuildBerth(t)
	queue := [][]string{{}}
	seen := 0
	for len(queue) > 0 {
		args := queue[0]
		queue = queue[1:]
		seen++
		out := cliHelp(t, binary, args...)
		name := strings.Join(append([]string{"berth"}, args...), " ")
		if !strings.Contains(out, "Usage:\n") {
			t.Errorf("%s --help has no usage:\n%s", name, out)
		}
		if first := strings.SplitN(out, "\n", 2)[0]; len(strings.TrimSpace(first)) < 10 {
			t.Errorf("%s --help starts with no description: %q", name, first)
		}
		section := ""
		for _, line := range strings.Split(out, "\n") {
			switch {
			case strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " "):
				section = line
				continue
			case strings.TrimSpace(line) == "":
				continue
			}
			switch section {
			case "Available Commands:":
				f := strings.Fields(line)
				if len(f) < 2 {
					t.Errorf("%s: command %q has no description", name, line)
				}
				if f[0] != "help" && f[0] != "completion" {
					queue = append(queue, append(slices.Clone(args), f[0]))
				}
			case "Flags:", "Global Flags:":
				if strings.HasPrefix(strings.TrimSpace(line), "-") && !helpFlagLine.MatchString(line) {
					t.Errorf("%s: flag without a description: %q", name, line)
				}
			}
		}
	}
	// berth, server, login, configure, group + 4 verbs, container + 11 verbs.
	if seen < 21 {
		t.Errorf("walked %d commands' help, want at least 21", seen)
	}
}

// TestCLI_IssueFlags checks that every flag the CLI issue lists exists.
func TestCLI_IssueFlags(t *testing.T) {
	t.Parallel()
	binary := testenv.BuildBerth(t)
	want := map[string][]string{
		"login":     {"--config"},
		"configure": {"--defaults"},
		"container create": {"-g, --resource-group", "-n, --name", "--image", "--cpu", "--memory", "--ports",
			"--protocol", "--ip-address", "--dns-name-label", "--environment-variables", "--secure-environment-variables",
			"--command-line", "--restart-policy", "--registry-login-server", "--registry-username", "--registry-password",
			"--os-type", "--subnet", "--vnet", "--gitrepo-url", "--gitrepo-dir", "--gitrepo-mount-path", "--secrets",
			"--secrets-mount-path", "--no-wait", "--file", "-o, --output", "--query"},
		"container show":    {"-g, --resource-group", "-n, --name", "-o, --output", "--query"},
		"container list":    {"-g, --resource-group", "-o, --output", "--query"},
		"container logs":    {"--follow", "--container-name"},
		"container exec":    {"--exec-command", "--container-name"},
		"container attach":  {"--container-name"},
		"container start":   {"-n, --name"},
		"container stop":    {"-n, --name"},
		"container restart": {"-n, --name"},
		"container delete":  {"--yes"},
		"container export":  {"--file"},
		"group create":      {"-n, --name", "-l, --location"},
		"group show":        {"-n, --name"},
		"group list":        {"-o, --output"},
		"group delete":      {"-n, --name", "--yes"},
	}
	for cmd, flags := range want {
		out := cliHelp(t, binary, strings.Fields(cmd)...)
		for _, f := range flags {
			if !regexp.MustCompile(`[ ,]` + regexp.QuoteMeta(f) + ` `).MatchString(out) {
				t.Errorf("berth %s has no flag %s", cmd, f)
			}
		}
	}
	// The defaults az documents.
	out := cliHelp(t, binary, "container", "create")
	for _, d := range []string{`--cpu float .*\(default 1\)`, `--memory float .*\(default 1.5\)`, `--ports ints .*\(default \[80\]\)`, `--restart-policy string .*\(default "Always"\)`, `--os-type string .*\(default "Linux"\)`} {
		if !regexp.MustCompile(d).MatchString(out) {
			t.Errorf("container create --help: no match for %s", d)
		}
	}
}
