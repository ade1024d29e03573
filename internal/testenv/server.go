package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BerthPackage is the import path of the berth binary.
const BerthPackage = "github.com/berth-dev/berth/cmd/berth"

// ClientConfig is DATA_DIR/client.json, which berth server writes once its
// API answers.
type ClientConfig struct {
	Endpoint string `json:"endpoint"`
	CAFile   string `json:"caFile"`
	Token    string `json:"token"`
}

// LocalNodeName is the node name of a test server's in-process agent,
// and LocalNodeCPU and LocalNodeMemoryGB what it offers groups unless the
// test passes --cpu.
const (
	LocalNodeName     = "local"
	LocalNodeCPU      = "256"
	LocalNodeMemoryGB = "1024"
)

// ServerOptions configures StartServer.
type ServerOptions struct {
	// Containerd is the daemon the server's agent uses (required, unless
	// NoLocalAgent).
	Containerd *Containerd
	// NoLocalAgent runs the server without its in-process agent
	// (--local-agent=false), for a cluster of StartAgent nodes.
	NoLocalAgent bool
	// ListenHost is the address the API and the DNS server listen on,
	// default 127.0.0.1; a NodeNetwork's BridgeAddr lets its nodes reach
	// them.
	ListenHost string
	// InsecureRegistries are passed as --insecure-registry.
	InsecureRegistries []string
	// DataDir, when set, is used instead of a fresh directory (and not
	// removed at the end); use it to start a second server on the state of
	// a stopped one.
	DataDir string
	// LogLevel is --log-level; default "debug", since the log is only
	// printed when a test fails.
	LogLevel string
	// ExtraArgs are appended to the command line. Without a
	// --dns-forward among them the DNS server forwards nowhere, so that
	// no test query leaves the host. (issue 5)
	ExtraArgs []string
	// Isolation is --isolation; empty means DefaultIsolation(). "sandboxed"
	// also builds Berth's gVisor shim (BuildRunscShim) and passes it as
	// --runsc-shim, with runsc from hack/setup.sh (RequireRunsc). (issue 7)
	Isolation string
}

// IsolationEnv names the environment variable that chooses the isolation
// level of test servers whose options name none, so that `make test` can
// run the same end-to-end suite under each level.
const IsolationEnv = "BERTH_E2E_ISOLATION"

// DefaultIsolation is the level of test servers whose options name none:
// $BERTH_E2E_ISOLATION, else berth server's own default, "sandboxed".
func DefaultIsolation() string {
	if v := os.Getenv(IsolationEnv); v != "" {
		return v
	}
	return "sandboxed"
}

// Server is a `berth server` child process with its own data dir, port,
// bridge and subnet.
type Server struct {
	DataDir string
	// Bridge is the unique CNI bridge name ("bt" + 6 hex digits) and Subnet
	// a random /24 in 10.231.0.0-10.250.255.0, so parallel servers never
	// collide.
	Bridge string
	Subnet string
	// Listen is the API's HOST:PORT, HOST being ServerOptions.ListenHost.
	Listen string
	// DNS is the built-in DNS server's HOST:PORT, UDP and TCP.
	DNS string
	// Client is the parsed client.json of the running server.
	Client ClientConfig

	opts    ServerOptions
	binary  string
	logPath string
	starts  int
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd exited
}

// BuildBerth builds ./cmd/berth once per test binary and returns its path.
// BERTH_BINARY, when set, names a prebuilt binary to use instead.
func BuildBerth(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("BERTH_BINARY"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("BERTH_BINARY: %v", err)
		}
		return abs
	}
	return cachedBuild(t, "berth", BerthPackage, func(ctx context.Context, out string) error {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, BerthPackage)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", BerthPackage, err, b)
		}
		return nil
	})
}

// StartServer starts `berth server` and waits up to 60s for client.json.
// The cleanup stops the server, unmounts what it left under its data dir,
// deletes its bridge and removes iptables rules that mention its subnet.
// Register it after StartContainerd so that it runs first: the containerd
// cleanup then kills the containers the server left running.
func StartServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	RequireRoot(t)
	if opts.Containerd == nil && !opts.NoLocalAgent {
		t.Fatal("StartServer: ServerOptions.Containerd is required")
	}
	if opts.ListenHost == "" {
		opts.ListenHost = "127.0.0.1"
	} else if _, err := netip.ParseAddr(opts.ListenHost); err != nil {
		t.Fatalf("StartServer: ListenHost %q is not an IP address", opts.ListenHost)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.Isolation == "" {
		opts.Isolation = DefaultIsolation()
	}
	s := &Server{opts: opts, binary: BuildBerth(t)}

	ownDataDir := opts.DataDir == ""
	if ownDataDir {
		// Short, because the server may put unix sockets below it.
		s.DataDir = shortTempDir(t, "bsrv-")
	} else {
		s.DataDir = opts.DataDir
	}
	var err error
	if s.Bridge, s.Subnet, err = uniqueNetwork(); err != nil {
		t.Fatalf("pick bridge and subnet: %v", err)
	}
	if s.Listen, err = freeAddr(opts.ListenHost); err != nil {
		t.Fatalf("pick API port: %v", err)
	}
	if s.DNS, err = freeDNSAddr(opts.ListenHost); err != nil {
		t.Fatalf("pick DNS port: %v", err)
	}
	s.logPath = filepath.Join(t.TempDir(), "berth-server.log")

	dumpLogOnFailure(t, "berth server", s.logPath)
	t.Cleanup(func() { s.cleanup(t, ownDataDir) })
	// A port found free may be taken by another test's process before
	// the server binds it: then pick others and start again.
	for attempt := 1; s.start(t) == errPortTaken; attempt++ {
		if attempt == 3 {
			t.Fatalf("berth server found its ports taken %d times (its log follows at the end)", attempt)
		}
		if s.Listen, err = freeAddr(opts.ListenHost); err != nil {
			t.Fatalf("pick API port: %v", err)
		}
		if s.DNS, err = freeDNSAddr(opts.ListenHost); err != nil {
			t.Fatalf("pick DNS port: %v", err)
		}
	}
	return s
}

// errPortTaken: the server exited at start because a port it was given
// was in use.
var errPortTaken = errors.New("a port of the server was taken")

// Stop sends SIGTERM and waits up to 30s, then SIGKILLs. A server that needs
// the SIGKILL, or exits non-zero, fails the test.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		t.Errorf("berth server had exited before Stop: %v", s.cmd.ProcessState)
		s.cmd = nil
		return
	default:
	}
	start := time.Now()
	if !stopProcess(s.cmd, s.done, 30*time.Second) {
		t.Errorf("berth server did not stop within 30s of SIGTERM; killed it")
	} else if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("berth server exited with %v after SIGTERM, want status 0", s.cmd.ProcessState)
	} else {
		t.Logf("berth server stopped in %s", time.Since(start).Round(time.Millisecond))
	}
	s.cmd = nil
}

// Restart stops the server and starts it again with the same data dir,
// bridge, subnet and port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	if err := s.start(t); err != nil {
		t.Fatalf("restart berth server on its ports: %v", err)
	}
}

// SetExtraArgs replaces ServerOptions.ExtraArgs for the next start, e.g.
// to Restart the same server without a flag it had. (issue 7)
func (s *Server) SetExtraArgs(args []string) { s.opts.ExtraArgs = args }

// HTTPClient returns a client that trusts the server's CA.
func (s *Server) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(s.Client.CAFile); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}
}

// Do sends an authenticated request to path (below the endpoint) with a
// JSON body when body is not nil.
func (s *Server) Do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	return s.DoAs(ctx, s.Client.Token, method, path, body)
}

// DoAs is Do with another bearer token.
func (s *Server) DoAs(ctx context.Context, token, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode body: %w", err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, s.Client.Endpoint+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return s.HTTPClient().Do(req)
}

// LogPath is the server's log file (all starts, appended).
func (s *Server) LogPath() string { return s.logPath }

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// start runs the binary and waits for a fresh client.json and a TLS answer.
// start starts the server and waits until it answers. It fails t, but
// for errPortTaken, which it returns.
func (s *Server) start(t testing.TB) error {
	t.Helper()
	s.starts++
	clientFile := filepath.Join(s.DataDir, "client.json")
	// A stale file from the previous run would make us believe the new
	// server is up before it is; the server writes it again on every start.
	if err := os.Remove(clientFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("remove stale client.json: %v", err)
	}

	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open server log: %v", err)
	}
	defer logFile.Close()
	args := []string{"server",
		"--data-dir", s.DataDir,
		"--listen", s.Listen,
	}
	if s.opts.Containerd != nil {
		args = append(args, "--containerd-address", s.opts.Containerd.Address)
	}
	if s.opts.NoLocalAgent {
		args = append(args, "--local-agent=false")
	} else {
		if !slices.Contains(s.opts.ExtraArgs, "--node-name") {
			// One name on every machine: it shows in events (Scheduled).
			args = append(args, "--node-name", LocalNodeName)
		}
		if !slices.Contains(s.opts.ExtraArgs, "--cpu") {
			// The scheduler counts requests against the node's
			// allocatable; tests of other things run more groups at
			// once than a small test machine has CPUs, as they did
			// before there was a scheduler. Capacity tests pass --cpu.
			args = append(args, "--cpu", LocalNodeCPU, "--memory-gb", LocalNodeMemoryGB)
		}
	}
	args = append(args,
		"--bridge-name", s.Bridge,
		"--subnet", s.Subnet,
		"--log-level", s.opts.LogLevel,
		"--dns-listen", s.DNS,
	)
	if !slices.Contains(s.opts.ExtraArgs, "--dns-forward") {
		args = append(args, "--dns-forward", "none")
	}
	for _, r := range s.opts.InsecureRegistries {
		args = append(args, "--insecure-registry", r)
	}
	args = append(args, "--isolation", s.opts.Isolation)
	// Without a local agent nothing of the server runs runsc.
	if s.opts.Isolation == "sandboxed" && !s.opts.NoLocalAgent {
		args = append(args, "--runsc-path", RequireRunsc(t), "--runsc-shim", BuildRunscShim(t))
	}
	args = append(args, s.opts.ExtraArgs...)
	fmt.Fprintf(logFile, "===== testenv: start %d: %s %s\n", s.starts, s.binary, strings.Join(args, " "))

	cmd := exec.Command(s.binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = daemonAttrs()
	if err := startDaemon(cmd); err != nil {
		t.Fatalf("start berth server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			s.cmd = nil
			if s.lastStartLogHas("bind: address already in use") {
				t.Logf("berth server start %d: a port was taken: %v", s.starts, cmd.ProcessState)
				return errPortTaken
			}
			t.Fatalf("berth server exited during start-up: %v (its log follows at the end)", cmd.ProcessState)
		default:
		}
		err := s.ready(clientFile)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth server not ready after 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastStartLogHas tells whether the log of the latest start holds text.
func (s *Server) lastStartLogHas(text string) bool {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return false
	}
	if i := bytes.LastIndex(b, []byte("===== testenv: start")); i >= 0 {
		b = b[i:]
	}
	return bytes.Contains(b, []byte(text))
}

// ready parses client.json and checks that the endpoint answers over TLS
// with the CA it names.
func (s *Server) ready(clientFile string) error {
	b, err := os.ReadFile(clientFile)
	if err != nil {
		return fmt.Errorf("read client.json: %w", err)
	}
	var cc ClientConfig
	if err := json.Unmarshal(b, &cc); err != nil {
		return fmt.Errorf("parse client.json: %w", err)
	}
	if cc.Endpoint == "" || cc.CAFile == "" || cc.Token == "" {
		return fmt.Errorf("client.json lacks endpoint, caFile or token: %s", b)
	}
	s.Client = cc
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.Do(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", cc.Endpoint, err)
	}
	resp.Body.Close()
	return nil
}

// cleanup stops the server and removes what it leaves on the host. The
// containers it ran keep running until the containerd cleanup kills them.
func (s *Server) cleanup(t testing.TB, ownDataDir bool) {
	if s.cmd != nil {
		select {
		case <-s.done:
			t.Errorf("berth server exited before the end of the test: %v", s.cmd.ProcessState)
			s.cmd = nil
		default:
			s.Stop(t)
		}
	}
	// runsc keeps an empty network namespace mounted in its root, below
	// the server's runtime state dir, while sandboxes exist. (issue 7)
	if s.opts.Isolation == "sandboxed" {
		if err := UnmountUnder(RuntimeStateDir(s.DataDir)); err != nil {
			t.Errorf("unmount under %s: %v", RuntimeStateDir(s.DataDir), err)
		}
	}
	// Network namespace files stay mounted while their groups exist; a
	// lazy unmount frees the files while running containers keep the
	// namespaces themselves.
	if err := UnmountUnder(s.DataDir); err != nil {
		t.Errorf("unmount under %s: %v", s.DataDir, err)
	}
	if err := deleteLink(s.Bridge); err != nil {
		t.Errorf("delete bridge %s: %v", s.Bridge, err)
	}
	// Its firewall table and virtual network bridges (issue 5).
	if left, err := removeServerNetworks(s.DataDir, s.Bridge); err != nil {
		t.Errorf("remove networks of the server: %v", err)
	} else if len(left) > 0 {
		t.Logf("removed network leftovers of the server:\n%s", strings.Join(left, "\n"))
	}
	removed, err := removeSubnetRules(s.Subnet)
	if err != nil {
		t.Errorf("remove iptables rules of %s: %v", s.Subnet, err)
	}
	if len(removed) > 0 {
		t.Logf("removed iptables leftovers of subnet %s:\n%s", s.Subnet, strings.Join(removed, "\n"))
	}
	if ownDataDir {
		removeTree(t, s.DataDir)
	}
}

// uniqueNetwork picks a bridge name and a /24 that no interface on the host
// uses.
func uniqueNetwork() (bridge, subnet string, err error) {
	for attempt := 0; attempt < 100; attempt++ {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return "", "", err
		}
		bridge = "bt" + hex.EncodeToString(b)
		second, err := rand.Int(rand.Reader, big.NewInt(20))
		if err != nil {
			return "", "", err
		}
		third, err := rand.Int(rand.Reader, big.NewInt(256))
		if err != nil {
			return "", "", err
		}
		prefix := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(231 + second.Int64()), byte(third.Int64()), 0}), 24)
		if _, err := net.InterfaceByName(bridge); err == nil {
			continue
		}
		if inUse, err := PrefixInUse(prefix); err != nil {
			return "", "", err
		} else if inUse {
			continue
		}
		return bridge, prefix.String(), nil
	}
	return "", "", errors.New("no free bridge name and subnet after 100 attempts")
}

// PrefixInUse reports whether any host interface has an address in p.
func PrefixInUse(p netip.Prefix) (bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		other := netip.PrefixFrom(ip.Unmap(), ones).Masked()
		if other.Overlaps(p) {
			return true, nil
		}
	}
	return false, nil
}

// deleteLink deletes the network interface name if it exists.
func deleteLink(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "del", "dev", name).CombinedOutput(); err != nil {
		if _, err2 := net.InterfaceByName(name); err2 != nil {
			return nil // gone meanwhile
		}
		return fmt.Errorf("ip link del %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freeDNSAddr picks a port of host free for both UDP and TCP.
func freeDNSAddr(host string) (string, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", err
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		pc.Close()
		if err != nil {
			continue
		}
		ln.Close()
		return addr, nil
	}
	return "", fmt.Errorf("no port of %s free for both UDP and TCP after 20 attempts", host)
}

// RuntimeStateDir is where `berth server --data-dir dataDir` keeps its
// runtime state (runc's and runsc's roots): internal/daemon's
// runtimeStateDir, which it must match.
func RuntimeStateDir(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join("/run/berth", hex.EncodeToString(sum[:6]))
}
