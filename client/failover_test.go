package client

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	armv1 "github.com/berth-dev/berth/api/v20230501"
)

// testServer is one server of a test cluster: a TLS server that counts the
// requests it got, or, when down, the URL of a closed listener (dialing it
// is refused).
type testServer struct {
	URL  string
	hits atomic.Int32
	// body is the last request body it got.
	body atomic.Value
}

// serverBehaviour is what a test server does with a request.
type serverBehaviour int

const (
	serverUp    serverBehaviour = iota // answers as the API does
	serverDown                         // its listener is closed
	serverFails                        // answers 500
	serverDrops                        // reads the request, then drops the connection
)

// newTestCluster starts one server per behaviour and returns a client
// whose config lists them in that order. All httptest servers share one
// certificate, so one CA file trusts them all.
func newTestCluster(t *testing.T, behaviours ...serverBehaviour) (*Client, []*testServer) {
	t.Helper()
	var (
		servers []*testServer
		urls    []string
		ca      string
	)
	for _, b := range behaviours {
		ts := &testServer{}
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ts.hits.Add(1)
			body, _ := io.ReadAll(r.Body)
			ts.body.Store(string(body))
			switch b {
			case serverFails:
				w.WriteHeader(http.StatusInternalServerError)
				w.Write([]byte(`{"error":{"code":"InternalServerError","message":"boom"}}`))
				return
			case serverDrops:
				panic(http.ErrAbortHandler)
			}
			switch {
			case strings.HasPrefix(r.URL.Path, "/ops/"):
				w.Write([]byte(`{"status":"Succeeded"}`))
			case r.Method == http.MethodPut:
				w.Write(body)
			default:
				w.Write([]byte(`{"name":"rg","location":"westus"}`))
			}
		}))
		ts.URL = srv.URL
		if ca == "" {
			ca = filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if b == serverDown {
			srv.Close()
		} else {
			t.Cleanup(srv.Close)
		}
		servers = append(servers, ts)
		urls = append(urls, srv.URL)
	}
	c, err := New(&Config{Endpoint: urls[0], Endpoints: urls[1:], CAFile: ca, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	c.PollInterval = 10 * time.Millisecond
	return c, servers
}

func hits(servers []*testServer) []int32 {
	out := make([]int32, len(servers))
	for i, s := range servers {
		out[i] = s.hits.Load()
	}
	return out
}

func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	getRG := func(c *Client, _ []*testServer) error {
		_, err := c.GetResourceGroup(ctx, "s", "rg")
		return err
	}
	createRG := func(c *Client, _ []*testServer) error {
		_, err := c.CreateResourceGroup(ctx, "s", "rg", armv1.ResourceGroup{Location: "westus", Tags: map[string]string{"k": "v"}})
		return err
	}
	// poll polls an operation URL on server i's host.
	poll := func(i int) func(*Client, []*testServer) error {
		return func(c *Client, servers []*testServer) error {
			_, err := c.Poll(ctx, &Operation{URL: servers[i].URL + "/ops/1?api-version=2018-06-01"})
			return err
		}
	}
	tests := []struct {
		name    string
		servers []serverBehaviour
		call    func(*Client, []*testServer) error
		// wantHits are the requests each server got.
		wantHits []int32
		wantErr  string
	}{
		{"first down: the request lands on the second", []serverBehaviour{serverDown, serverUp}, getRG, []int32{0, 1}, ""},
		{"first two down", []serverBehaviour{serverDown, serverDown, serverUp}, getRG, []int32{0, 0, 1}, ""},
		{"first up: the others are not asked", []serverBehaviour{serverUp, serverUp}, getRG, []int32{1, 0}, ""},
		{"a 500 is not retried elsewhere", []serverBehaviour{serverFails, serverUp}, getRG, []int32{1, 0}, "boom"},
		{"a request that reached a server is not resent", []serverBehaviour{serverDrops, serverUp}, createRG, []int32{1, 0}, "EOF"},
		{"PUT body after failover", []serverBehaviour{serverDown, serverUp}, createRG, []int32{0, 1}, ""},
		{"operation URL on the second endpoint's host", []serverBehaviour{serverUp, serverUp}, poll(1), []int32{1, 0}, ""},
		{"operation URL on the second endpoint's host, which is down", []serverBehaviour{serverUp, serverDown}, poll(1), []int32{1, 0}, ""},
		{"operation URL on the first endpoint's host, which is down", []serverBehaviour{serverDown, serverUp}, poll(0), []int32{0, 1}, ""},
		{"all down", []serverBehaviour{serverDown, serverDown}, getRG, []int32{0, 0}, "no endpoint could be reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, servers := newTestCluster(t, tt.servers...)
			err := tt.call(c, servers)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got error %v, want one with %q", err, tt.wantErr)
			}
			if got := hits(servers); !equalInts(got, tt.wantHits) {
				t.Errorf("requests per server %v, want %v", got, tt.wantHits)
			}
		})
	}
}

func equalInts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFailoverSticks checks that the endpoint that answered is asked first
// afterwards, and that a body sent after failover arrives whole.
func TestFailoverSticks(t *testing.T) {
	ctx := context.Background()
	c, servers := newTestCluster(t, serverDown, serverUp, serverUp)
	rg := armv1.ResourceGroup{Location: "westus", Tags: map[string]string{"owner": "ops"}}
	if _, err := c.CreateResourceGroup(ctx, "s", "rg", rg); err != nil {
		t.Fatal(err)
	}
	var got armv1.ResourceGroup
	body, _ := servers[1].body.Load().(string)
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Location != "westus" || got.Tags["owner"] != "ops" {
		t.Errorf("body on the second server %q (%v), want the resource group", body, err)
	}
	if ep := c.transport.Endpoint().String(); ep != servers[1].URL {
		t.Errorf("current endpoint %s after failover, want %s", ep, servers[1].URL)
	}
	for range 3 {
		if _, err := c.GetResourceGroup(ctx, "s", "rg"); err != nil {
			t.Fatal(err)
		}
	}
	if got := hits(servers); !equalInts(got, []int32{0, 4, 0}) {
		t.Errorf("requests per server %v, want all on the second", got)
	}
}

func TestFailoverRefusesForeignHosts(t *testing.T) {
	c, servers := newTestCluster(t, serverUp, serverUp)
	u, _ := url.Parse(servers[1].URL)
	for _, foreign := range []string{
		"https://elsewhere.example/ops/1",
		"http://" + u.Host + "/ops/1", // an endpoint's host, but not over TLS
	} {
		_, err := c.Poll(context.Background(), &Operation{URL: foreign})
		if err == nil || !strings.Contains(err.Error(), "refusing to send the token") {
			t.Errorf("poll %s: %v, want a refusal", foreign, err)
		}
	}
	if got := hits(servers); !equalInts(got, []int32{0, 0}) {
		t.Errorf("requests per server %v, want none", got)
	}
}

func TestNoEndpointError(t *testing.T) {
	c, _ := newTestCluster(t, serverDown, serverDown)
	_, err := c.GetResourceGroup(context.Background(), "s", "rg")
	var ne *NoEndpointError
	if !errors.As(err, &ne) || len(ne.Errs) != 2 {
		t.Fatalf("got %v, want a NoEndpointError with both servers' errors", err)
	}
	if !isDialError(ne.Errs[0]) {
		t.Errorf("%v is not a dial error", ne.Errs[0])
	}
}

func TestMoveURL(t *testing.T) {
	parse := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct{ u, from, to, want string }{
		{"https://a:1/ops/1?x=y", "https://a:1", "https://b:2", "https://b:2/ops/1?x=y"},
		{"https://a:1/api/ops/1", "https://a:1/api", "https://b:2/other", "https://b:2/other/ops/1"},
		{"https://a:1/api/g%2Fx", "https://a:1/api", "https://b:2", "https://b:2/g%2Fx"},
		{"https://a:1/apix/1", "https://a:1/api", "https://b:2/v", "https://b:2/apix/1"},
		{"https://a:1/p", "https://a:1", "https://a:1", "https://a:1/p"},
	}
	for _, tt := range tests {
		if got := moveURL(parse(tt.u), parse(tt.from), parse(tt.to)).String(); got != tt.want {
			t.Errorf("moveURL(%s, %s → %s) = %s, want %s", tt.u, tt.from, tt.to, got, tt.want)
		}
	}
}

func TestConfigEndpoints(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    []string
		wantErr string
	}{
		{"one", Config{Endpoint: "https://a:1/"}, []string{"https://a:1"}, ""},
		{"several", Config{Endpoint: "https://a:1", Endpoints: []string{"https://b:2", "https://c:3/"}}, []string{"https://a:1", "https://b:2", "https://c:3"}, ""},
		{"itself among the others", Config{Endpoint: "https://a:1", Endpoints: []string{"https://A:1", "https://b:2"}}, []string{"https://a:1", "https://b:2"}, ""},
		{"not https", Config{Endpoint: "https://a:1", Endpoints: []string{"http://b:2"}}, nil, `endpoints[0] "http://b:2"`},
		{"no host", Config{Endpoint: "https://a:1", Endpoints: []string{"https://b:2", "b:3"}}, nil, `endpoints[1] "b:3"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.CAFile, tt.cfg.Token = "ca.pem", "t"
			err := tt.cfg.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate: %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			urls, _ := tt.cfg.endpointURLs()
			var got []string
			for _, u := range urls {
				got = append(got, u.String())
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("endpoints %v, want %v", got, tt.want)
			}
		})
	}

	// The field survives the file, and a file without it still loads.
	path := filepath.Join(t.TempDir(), "config.json")
	in := &Config{Endpoint: "https://a:1", Endpoints: []string{"https://b:2"}, CAFile: "/ca.pem", Token: "t"}
	if err := SaveConfig(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := LoadConfig(path)
	if err != nil || len(out.Endpoints) != 1 || out.Endpoints[0] != "https://b:2" {
		t.Errorf("loaded %+v (%v), want the endpoints kept", out, err)
	}
	if err := os.WriteFile(path, []byte(`{"endpoint":"https://a:1","caFile":"/ca.pem","token":"t"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := LoadConfig(path); err != nil || out.Validate() != nil || out.Endpoints != nil {
		t.Errorf("a single-endpoint config: %+v %v", out, err)
	}
}
