package client

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	armv1 "github.com/berth-dev/berth/api/v20230501"
)

// newTestClient starts a TLS server with handler and returns a client that
// trusts it.
func newTestClient(t *testing.T, handler http.Handler) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewTLSServer(handler)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(&Config{Endpoint: srv.URL, CAFile: ca, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	c.PollInterval = 10 * time.Millisecond
	return c, srv
}

func TestConfigSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "config.json")
	in := &Config{Endpoint: "https://127.0.0.1:8443", CAFile: "ca.pem", Token: "t", Defaults: Defaults{Group: "rg"}}
	if err := SaveConfig(path, in); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode: %v %v, want 0600", fi.Mode(), err)
	}
	out, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.CAFile != filepath.Join(dir, "sub", "ca.pem") {
		t.Errorf("relative caFile resolved to %q, want next to the config", out.CAFile)
	}
	if out.Subscription() != DefaultSubscription || out.Location() != DefaultLocation || out.Defaults.Group != "rg" {
		t.Errorf("defaults: %+v", out)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); !errors.Is(err, ErrNoConfig) {
		t.Errorf("missing config: got %v, want ErrNoConfig", err)
	}
	t.Setenv(ConfigEnv, "/x/y.json")
	if p, _ := ConfigPath(); p != "/x/y.json" {
		t.Errorf("ConfigPath with %s set: %q", ConfigEnv, p)
	}
	for _, bad := range []*Config{{}, {Endpoint: "http://x", CAFile: "c", Token: "t"}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) passed", bad)
		}
	}
}

func TestAPIErrorsAndOperations(t *testing.T) {
	var polls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("request without the token: %v", r.Header)
		}
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/containerGroups/missing"):
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"code":"ResourceNotFound","message":"The Resource was not found."}}`))
		case r.Method == http.MethodPut:
			if r.URL.Query().Get("api-version") != "2023-05-01" {
				t.Errorf("PUT without the api-version: %s", r.URL)
			}
			w.Header().Set("Azure-AsyncOperation", "https://"+r.Host+"/ops/1?api-version=2018-06-01")
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"name":"g","properties":{"provisioningState":"Pending","containers":[]},"extra":{"kept":true}}`))
		case strings.HasPrefix(r.URL.Path, "/ops/1"):
			if polls.Add(1) < 3 {
				w.Write([]byte(`{"status":"Pending"}`))
				return
			}
			w.Write([]byte(`{"status":"Failed","error":{"code":"InaccessibleImage","message":"The image 'x' is not accessible."}}`))
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte("boom"))
		}
	})
	c, _ := newTestClient(t, mux)
	ctx := context.Background()
	ref := GroupRef{Subscription: "s", ResourceGroup: "rg", Name: "missing"}

	_, err := c.GetContainerGroup(ctx, ref)
	if !IsNotFound(err) || err.Error() != "(ResourceNotFound) The Resource was not found." {
		t.Errorf("get missing: %v", err)
	}
	ref.Name = "g"
	g, op, err := c.BeginCreateOrUpdate(ctx, ref, map[string]any{"location": "westus"})
	if err != nil || op == nil {
		t.Fatalf("create: %v %v", op, err)
	}
	if !strings.Contains(string(g.Raw), `"extra":{"kept":true}`) || g.Properties.ProvisioningState != "Pending" {
		t.Errorf("the group keeps the raw JSON and the typed view: %s", g.Raw)
	}
	if b, _ := json.Marshal(g); string(b) != string(g.Raw) {
		t.Errorf("MarshalJSON does not return the raw JSON: %s", b)
	}
	ticks := 0
	_, err = c.Wait(ctx, op, func(st *armv1.OperationStatus) { ticks++ })
	if ErrorCode(err) != "InaccessibleImage" || ticks != 3 {
		t.Errorf("wait: %v after %d polls, want InaccessibleImage after 3", err, ticks)
	}
	_, err = c.BeginDelete(ctx, ref)
	if ErrorCode(err) != "InternalServerError" || !strings.Contains(err.Error(), "boom") {
		t.Errorf("delete with a non-ARM error body: %v", err)
	}
	if _, err := c.Poll(ctx, &Operation{URL: "https://elsewhere.example/ops/1"}); err == nil || !strings.Contains(err.Error(), "refusing to send the token") {
		t.Errorf("poll on another host: %v", err)
	}
}

// TestExecSession checks the exec protocol as azure-cli speaks it: the
// password is the first message, stdin goes as binary frames, and the
// session ends cleanly when the server closes.
func TestExecSession(t *testing.T) {
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/g/containers/c/exec", func(w http.ResponseWriter, r *http.Request) {
		var req ExecRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Command != "/bin/sh" || req.TerminalSize.Rows != 24 {
			t.Errorf("exec request %+v: %v", req, err)
		}
		json.NewEncoder(w).Encode(StreamEndpoint{WebSocketURI: "wss://" + r.Host + "/stream/1", Password: "pw"})
	})
	mux.HandleFunc("/stream/1", func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		if typ, msg, err := conn.ReadMessage(); err != nil || typ != websocket.TextMessage || string(msg) != "pw" {
			t.Errorf("first message: %d %q %v, want the password as text", typ, msg, err)
			return
		}
		typ, msg, err := conn.ReadMessage()
		if err != nil || typ != websocket.BinaryMessage {
			t.Errorf("stdin frame: %d %v, want binary", typ, err)
			return
		}
		conn.WriteMessage(websocket.BinaryMessage, append([]byte("echo: "), msg...))
		conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	})
	c, _ := newTestClient(t, mux)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref := GroupRef{Subscription: "s", ResourceGroup: "rg", Name: "g"}
	ep, err := c.Exec(ctx, ref, "c", ExecRequest{Command: "/bin/sh", TerminalSize: &TerminalSize{Rows: 24, Cols: 80}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c.DialExec(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := Pipe(ctx, conn, strings.NewReader("ls\n"), &out); err != nil {
		t.Fatalf("pipe: %v", err)
	}
	if out.String() != "echo: ls\n" {
		t.Errorf("output %q", out.String())
	}
}
