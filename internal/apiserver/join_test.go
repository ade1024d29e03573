package apiserver

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/join"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// clusterEnv is an API server as `berth server` runs it for remote
// agents: real PKI, a listener that verifies the client certificates it
// is given, the node protocol and joining.
type clusterEnv struct {
	t      *testing.T
	srv    *httptest.Server
	store  *store.Store
	pki    *pki.Bundle
	tokens *join.Tokens
	now    atomic.Pointer[time.Time]
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	cli, err := embedetcd.NewClient(context.Background(), etcdEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	st := store.New(cli, fmt.Sprintf("/test-%d/", prefixSeq.Add(1)))
	bundle, err := pki.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	principals, err := auth.NewTokens(testToken, []auth.Principal{{Name: "tenant", Token: tenantToken, Subscriptions: []string{tenantSub}}})
	if err != nil {
		t.Fatal(err)
	}
	e := &clusterEnv{t: t, store: st, pki: bundle}
	e.setNow(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	e.tokens = join.New(st, e.clock)
	api := New(Options{
		Store: st, Tokens: principals, Now: e.clock,
		Nodes:        nodeplane.NewServer(nodeplane.ServerOptions{Store: st, Now: e.clock}),
		NodeIdentity: pki.NodeName,
		JoinTokens:   e.tokens,
		SignNode: func(csr []byte, node string, ips []net.IP) ([]byte, error) {
			return bundle.SignNode(csr, node, ips, pki.DefaultNodeCertTTL)
		},
		CAPEM: bundle.CAPEM(),
	})
	e.srv = httptest.NewUnstartedServer(api)
	e.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{bundle.ServerCert},
		ClientCAs:    bundle.CAPool(),
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *clusterEnv) clock() time.Time        { return *e.now.Load() }
func (e *clusterEnv) setNow(t time.Time)      { e.now.Store(&t) }
func (e *clusterEnv) advance(d time.Duration) { e.setNow(e.clock().Add(d)) }

// call sends a request as whoever: a bearer token ("" for none) and a
// client certificate (nil for none). It returns the status and the body.
func (e *clusterEnv) call(method, path string, body any, bearer string, cert *tls.Certificate) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	tc := &tls.Config{RootCAs: e.pki.CAPool(), ServerName: "localhost"}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// admin calls with the admin's token and decodes a JSON answer into out.
func (e *clusterEnv) admin(method, path string, body, out any) int {
	e.t.Helper()
	status, b := e.call(method, path, body, testToken, nil)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return status
}

// newToken creates a join token through the API.
func (e *clusterEnv) newToken(ttl string) string {
	e.t.Helper()
	var out createdJoinToken
	if st := e.admin(http.MethodPost, nodeAPIPrefix+"jointokens", createJoinTokenRequest{TTL: ttl}, &out); st != http.StatusCreated {
		e.t.Fatalf("create join token: status %d", st)
	}
	return out.Token
}

// snapshot is every join token and node record, to show that a refused
// join changed nothing.
func (e *clusterEnv) snapshot() string {
	e.t.Helper()
	var b strings.Builder
	for _, prefix := range []string{types.PrefixJoinTokens, types.PrefixNodes, types.PrefixLeases} {
		kvs, _, err := e.store.List(context.Background(), prefix)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, kv := range kvs {
			fmt.Fprintf(&b, "%s@%d=%s\n", kv.Key, kv.Revision, kv.Value)
		}
	}
	return b.String()
}

// armErr decodes an ARM error body.
func armErr(t *testing.T, b []byte) (code, msg string) {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("error body is not JSON: %q", b)
	}
	return errCode(body), errMessage(body)
}

func joinRequest(t *testing.T, token, node string) (join.Request, []byte) {
	t.Helper()
	keyPEM, csr, err := pki.NewNodeKey(node, nil)
	if err != nil {
		t.Fatal(err)
	}
	return join.Request{Token: token, Node: node, CSR: base64.StdEncoding.EncodeToString(csr), Addresses: []string{"10.1.2.3"}}, keyPEM
}

func TestJoin(t *testing.T) {
	for _, tc := range []struct {
		name string
		// prepare runs after the token is made; edit changes the request.
		prepare  func(e *clusterEnv, token string)
		edit     func(r *join.Request)
		status   int
		code     string
		msgMatch string
	}{
		{name: "a good token joins", status: http.StatusOK},
		{
			name: "a reused token is refused",
			prepare: func(e *clusterEnv, token string) {
				req, _ := joinRequest(e.t, token, "node-first")
				if st, b := e.call(http.MethodPost, nodeAPIPrefix+"join", req, "", nil); st != http.StatusOK {
					e.t.Fatalf("first join: %d %s", st, b)
				}
			},
			status: http.StatusUnauthorized, code: "AuthenticationFailed",
			msgMatch: `^join token [a-z0-9]{6} was already used by node node-first$`,
		},
		{
			name:    "an expired token is refused",
			prepare: func(e *clusterEnv, _ string) { e.advance(2 * time.Hour) },
			status:  http.StatusUnauthorized, code: "AuthenticationFailed",
			msgMatch: `^join token [a-z0-9]{6} expired at 2026-03-04T06:06:07Z$`,
		},
		{
			name:   "a wrong secret is refused",
			edit:   func(r *join.Request) { r.Token = r.Token[:7] + strings.Repeat("0", 16) },
			status: http.StatusUnauthorized, code: "AuthenticationFailed", msgMatch: `^join token is invalid$`,
		},
		{
			name:   "a malformed token is refused",
			edit:   func(r *join.Request) { r.Token = "hello" },
			status: http.StatusUnauthorized, code: "AuthenticationFailed", msgMatch: `^join token is invalid$`,
		},
		{
			name:   "no token is refused",
			edit:   func(r *join.Request) { r.Token = "" },
			status: http.StatusUnauthorized, code: "AuthenticationFailed", msgMatch: `^join token is invalid$`,
		},
		{
			name:   "a bad node name burns no token",
			edit:   func(r *join.Request) { r.Node = "Node_A" },
			status: http.StatusBadRequest, code: "InvalidNodeName",
		},
		{
			name:   "a bad address burns no token",
			edit:   func(r *join.Request) { r.Addresses = []string{"10.1.2"} },
			status: http.StatusBadRequest, code: "InvalidAddress",
		},
		{
			name:   "a CSR that is not base64 burns no token",
			edit:   func(r *join.Request) { r.CSR = "!!" },
			status: http.StatusBadRequest, code: "InvalidCertificateRequest",
		},
		{
			name:   "a CSR that is not a request burns no token",
			edit:   func(r *join.Request) { r.CSR = base64.StdEncoding.EncodeToString([]byte("not DER")) },
			status: http.StatusBadRequest, code: "InvalidRequestContent",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newClusterEnv(t)
			token := e.newToken("1h")
			if tc.prepare != nil {
				tc.prepare(e, token)
			}
			req, keyPEM := joinRequest(t, token, "node-a")
			if tc.edit != nil {
				tc.edit(&req)
			}
			before := e.snapshot()
			status, b := e.call(http.MethodPost, nodeAPIPrefix+"join", req, "", nil)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, b)
			}
			if status != http.StatusOK {
				code, msg := armErr(t, b)
				if code != tc.code || (tc.msgMatch != "" && !regexp.MustCompile(tc.msgMatch).MatchString(msg)) {
					t.Errorf("error %s %q, want %s matching %s", code, msg, tc.code, tc.msgMatch)
				}
				if after := e.snapshot(); after != before {
					t.Errorf("a refused join changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				return
			}
			var resp join.Response
			if err := json.Unmarshal(b, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.CA != string(e.pki.CAPEM()) {
				t.Error("the join answer's CA is not the server's")
			}
			pair, err := tls.X509KeyPair([]byte(resp.Certificate), keyPEM)
			if err != nil {
				t.Fatalf("the certificate is not for the node's key: %v", err)
			}
			if name, ok := pki.NodeName(pair.Leaf); !ok || name != "node-a" {
				t.Errorf("NodeName = %q, %v; want node-a", name, ok)
			}
			if err := pair.Leaf.VerifyHostname("10.1.2.3"); err != nil {
				t.Errorf("the certificate does not name the node's address: %v", err)
			}
			jt, _, err := store.NewTyped[types.JoinToken](e.store, types.PrefixJoinTokens).Get(context.Background(), join.ID(token))
			if err != nil || jt.UsedBy != "node-a" {
				t.Errorf("token after the join: %+v, %v; want used by node-a", jt, err)
			}
			if nodes, _, _ := e.store.List(context.Background(), types.PrefixNodes); len(nodes) != 0 {
				t.Errorf("the join made %d node records; the agent registers itself", len(nodes))
			}
		})
	}
}

// TestJoin_ThenMutualTLS follows a node from its join to its first calls:
// its certificate makes it that node, for the node protocol only.
func TestJoin_ThenMutualTLS(t *testing.T) {
	e := newClusterEnv(t)
	req, keyPEM := joinRequest(t, e.newToken("1h"), "node-a")
	status, b := e.call(http.MethodPost, nodeAPIPrefix+"join", req, "", nil)
	if status != http.StatusOK {
		t.Fatalf("join: %d %s", status, b)
	}
	var resp join.Response
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode([]byte(resp.CA)); blk == nil {
		t.Fatal("no CA in the answer")
	}
	cert, err := tls.X509KeyPair([]byte(resp.Certificate), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"it registers as itself", http.MethodPut, nodeAPIPrefix + "nodes/node-a", types.Node{Addresses: []string{"10.1.2.3"}}, http.StatusOK},
		{"it may not register as another node", http.MethodPut, nodeAPIPrefix + "nodes/node-b", types.Node{}, http.StatusForbidden},
		{"it may not mint join tokens", http.MethodPost, nodeAPIPrefix + "jointokens", createJoinTokenRequest{TTL: "1h"}, http.StatusForbidden},
		{"it may not list join tokens", http.MethodGet, nodeAPIPrefix + "jointokens", nil, http.StatusForbidden},
		{"it may not cordon itself", http.MethodPost, nodeAPIPrefix + "nodes/node-a/cordon", nil, http.StatusForbidden},
		{"it may not read a node's record", http.MethodGet, nodeAPIPrefix + "nodes/node-a", nil, http.StatusForbidden},
		{"it is nobody on the ARM API", http.MethodGet, "/subscriptions/" + sub + "/resourcegroups", nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, b := e.call(tc.method, tc.path, tc.body, "", &cert); status != tc.want {
				t.Errorf("status %d, want %d: %s", status, tc.want, b)
			}
		})
	}
}

func TestJoinTokens_Admin(t *testing.T) {
	e := newClusterEnv(t)
	var created createdJoinToken
	if st := e.admin(http.MethodPost, nodeAPIPrefix+"jointokens", createJoinTokenRequest{TTL: "30m", Description: "rack 4"}, &created); st != http.StatusCreated {
		t.Fatalf("create: status %d", st)
	}
	if !regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`).MatchString(created.Token) || join.ID(created.Token) != created.ID {
		t.Errorf("created %+v: token not <id>.<secret> of its id", created)
	}
	if !created.ExpiresAt.Equal(e.clock().Add(30 * time.Minute)) {
		t.Errorf("expires at %s, want now+30m", created.ExpiresAt)
	}
	used := e.newToken("")
	req, _ := joinRequest(t, used, "node-u")
	if st, b := e.call(http.MethodPost, nodeAPIPrefix+"join", req, "", nil); st != http.StatusOK {
		t.Fatalf("join: %d %s", st, b)
	}

	status, b := e.call(http.MethodGet, nodeAPIPrefix+"jointokens", nil, testToken, nil)
	if status != http.StatusOK {
		t.Fatalf("list: %d %s", status, b)
	}
	secret := created.Token[7:]
	if strings.Contains(string(b), secret) || strings.Contains(string(b), "secretHash") {
		t.Errorf("the list shows secrets: %s", b)
	}
	var list struct{ Items []joinTokenView }
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, v := range list.Items {
		states[v.ID] = v.State + "/" + v.UsedBy + "/" + v.Description
	}
	want := map[string]string{created.ID: "Valid//rack 4", join.ID(used): "Used/node-u/"}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("listed %v, want %v", states, want)
	}
	e.advance(time.Hour)
	e.admin(http.MethodGet, nodeAPIPrefix+"jointokens", nil, &list)
	for _, v := range list.Items {
		if v.ID == created.ID && v.State != "Expired" {
			t.Errorf("token %s is %s an hour later, want Expired", v.ID, v.State)
		}
	}

	for _, tc := range []struct {
		name         string
		method, path string
		body         any
		bearer       string
		want         int
		code         string
	}{
		{"a tenant may not create tokens", http.MethodPost, "jointokens", createJoinTokenRequest{TTL: "1h"}, tenantToken, http.StatusForbidden, "AuthorizationFailed"},
		{"a tenant may not list tokens", http.MethodGet, "jointokens", nil, tenantToken, http.StatusForbidden, "AuthorizationFailed"},
		{"a tenant may not delete tokens", http.MethodDelete, "jointokens/" + created.ID, nil, tenantToken, http.StatusForbidden, "AuthorizationFailed"},
		{"an anonymous caller may not list tokens", http.MethodGet, "jointokens", nil, "", http.StatusUnauthorized, "AuthenticationFailed"},
		{"a ttl over a week is refused", http.MethodPost, "jointokens", createJoinTokenRequest{TTL: "169h"}, testToken, http.StatusBadRequest, "InvalidRequestContent"},
		{"a ttl that is no duration is refused", http.MethodPost, "jointokens", createJoinTokenRequest{TTL: "soon"}, testToken, http.StatusBadRequest, "InvalidTTL"},
		{"a negative ttl is refused", http.MethodPost, "jointokens", createJoinTokenRequest{TTL: "-1h"}, testToken, http.StatusBadRequest, "InvalidRequestContent"},
		{"the admin deletes a token", http.MethodDelete, "jointokens/" + created.ID, nil, testToken, http.StatusOK, ""},
		{"deleting it again finds none", http.MethodDelete, "jointokens/" + created.ID, nil, testToken, http.StatusNoContent, ""},
		{"an id of the wrong shape is refused", http.MethodDelete, "jointokens/ABC", nil, testToken, http.StatusBadRequest, "InvalidRequestContent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b := e.call(tc.method, nodeAPIPrefix+tc.path, tc.body, tc.bearer, nil)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, b)
			}
			if tc.code != "" {
				if code, msg := armErr(t, b); code != tc.code {
					t.Errorf("code %s (%s), want %s", code, msg, tc.code)
				}
			}
		})
	}
	tokens, err := e.tokens.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 1 || tokens[0].ID != join.ID(used) {
		t.Errorf("tokens left: %+v, want only the used one", tokens)
	}
}
