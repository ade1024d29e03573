package testenv

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is Debian's docker-registry (distribution 2.8).
const RegistryBinary = "/usr/bin/docker-registry"

// Registry is a private OCI registry serving plain HTTP, on loopback
// unless it was started with StartRegistryOn.
type Registry struct {
	// Addr is host:port, e.g. "127.0.0.1:40123"; image references are
	// Addr + "/repo:tag". A registry on another address than loopback is
	// reached over plain HTTP only by clients told that it is insecure
	// (berth's --insecure-registry Addr).
	Addr string
}

// registryConfig is our own config: Debian's default one turns on htpasswd
// auth with a directory as the password file, so it is never used.
const registryConfig = `version: 0.1
log:
  level: info
  fields: {service: registry}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: true}
  maintenance:
    uploadpurging: {enabled: false}
http:
  addr: %q
  headers: {X-Content-Type-Options: [nosniff]}
%s`

// StartRegistry starts an anonymous registry on a free loopback port with
// storage in a temporary directory, and stops it when t ends.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	return startRegistry(t, "127.0.0.1", "")
}

// StartRegistryOn is StartRegistry on a free port of host, an address of
// the root namespace such as a NodeNetwork's BridgeAddr, so that daemons
// in the node namespaces can pull from it.
func StartRegistryOn(t testing.TB, host string) *Registry {
	t.Helper()
	if _, err := netip.ParseAddr(host); err != nil {
		t.Fatalf("StartRegistryOn: host %q is not an IP address", host)
	}
	return startRegistry(t, host, "")
}

// StartRegistryWithAuth is StartRegistry with HTTP basic auth: every request
// must carry user and pass.
func StartRegistryWithAuth(t testing.TB, user, pass string) *Registry {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
	if err != nil {
		t.Fatalf("hash registry password: %v", err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatalf("write htpasswd: %v", err)
	}
	auth := fmt.Sprintf("auth:\n  htpasswd:\n    realm: berth-test\n    path: %q\n", htpasswd)
	return startRegistry(t, "127.0.0.1", auth)
}

func startRegistry(t testing.TB, host, authConfig string) *Registry {
	t.Helper()
	RequireBinary(t, RegistryBinary)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "registry.log")
	dumpLogOnFailure(t, "registry", logPath)

	// The free port is found by binding and releasing it, so another process
	// can take it before the registry binds; retry on that rare race.
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		addr, err := freeAddr(host)
		if err != nil {
			t.Fatalf("find free port: %v", err)
		}
		r, err := runRegistry(t, dir, logPath, addr, authConfig)
		if err == nil {
			return r
		}
		last = err
	}
	t.Fatalf("start registry: %v", last)
	return nil
}

// runRegistry starts the registry on addr and waits for GET /v2/ to answer
// (200, or 401 with auth). A registry that exits during start-up is an
// error the caller may retry.
func runRegistry(t testing.TB, dir, logPath, addr, authConfig string) (*Registry, error) {
	config := filepath.Join(dir, "config.yml")
	body := fmt.Sprintf(registryConfig, filepath.Join(dir, "data"), addr, authConfig)
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		t.Fatalf("write registry config: %v", err)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open registry log: %v", err)
	}
	defer logFile.Close()

	cmd := exec.Command(RegistryBinary, "serve", config)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = daemonAttrs()
	if err := startDaemon(cmd); err != nil {
		t.Fatalf("start %s: %v", RegistryBinary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	wantStatus := http.StatusOK
	if authConfig != "" {
		wantStatus = http.StatusUnauthorized
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			return nil, fmt.Errorf("registry on %s exited during start-up (see its log)", addr)
		default:
		}
		resp, err := hc.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == wantStatus {
				break
			}
			err = fmt.Errorf("GET /v2/ answered %s", resp.Status)
		}
		if time.Now().After(deadline) {
			stopProcess(cmd, done, 5*time.Second)
			t.Fatalf("registry on %s not ready after 20s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	t.Cleanup(func() {
		select {
		case <-done:
			t.Errorf("registry exited before the end of the test: %v", cmd.ProcessState)
			return
		default:
		}
		if !stopProcess(cmd, done, 10*time.Second) {
			t.Errorf("registry did not stop on SIGTERM within 10s; killed it")
		}
	})
	return &Registry{Addr: addr}, nil
}

// Ref returns the reference of repoTag ("berth/hello:1") in r.
func (r *Registry) Ref(repoTag string) string {
	return r.Addr + "/" + strings.TrimPrefix(repoTag, "/")
}

// freeAddr returns host:port with a TCP port of host that was free a
// moment ago.
func freeAddr(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", err
	}
	return addr, nil
}
