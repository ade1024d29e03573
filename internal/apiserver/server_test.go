package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

const testToken = "test-token"

// A second principal, limited to its own subscription.
const (
	tenantToken = "tenant-token-0123456789"
	tenantSub   = "00000000-0000-0000-0000-0000000000aa"
)

// One etcd member serves every test of the package; each test gets its own
// key prefix, so tests never see each other's data.
var (
	etcdEndpoints []string
	prefixSeq     atomic.Int64
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "apiserver-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	e, err := embedetcd.Start(context.Background(), embedetcd.Config{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start etcd:", err)
		os.Exit(1)
	}
	etcdEndpoints = e.Endpoints()
	code := m.Run()
	e.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

func tailOf(s string, n int) string {
	if n == 0 {
		return s
	}
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	if n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "") + "\n"
}

type env struct {
	t     *testing.T
	srv   *httptest.Server
	store *store.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOpts(t, nil)
}

// newEnvOpts is newEnv with the server's options changed by set.
func newEnvOpts(t *testing.T, set func(*Options)) *env {
	t.Helper()
	cli, err := embedetcd.NewClient(context.Background(), etcdEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	st := store.New(cli, fmt.Sprintf("/test-%d/", prefixSeq.Add(1)))
	tokens, err := auth.NewTokens(testToken, []auth.Principal{{Name: "tenant", Token: tenantToken, Subscriptions: []string{tenantSub}}})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Store: st, Tokens: tokens, NodeServices: fakeNodes{testNode: &fakeExecer{logs: "one\ntwo\nthree\n"}}}
	if set != nil {
		set(&opts)
	}
	api := New(opts)
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, store: st}
}

// do sends a request with the test token and returns status, headers and
// the decoded JSON body (nil when empty).
func (e *env) do(method, path, body string) (int, http.Header, map[string]any) {
	e.t.Helper()
	return e.doAuth(method, path, body, "Bearer "+testToken)
}

func (e *env) doAuth(method, path, body, auth string) (int, http.Header, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(b) > 0 && b[0] == '[' {
		// A JSON array answer is returned under the key "array".
		var arr []any
		if err := json.Unmarshal(b, &arr); err != nil {
			e.t.Fatalf("%s %s: body is not JSON: %q", method, path, b)
		}
		return resp.StatusCode, resp.Header, map[string]any{"array": arr}
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			e.t.Fatalf("%s %s: body is not JSON: %q", method, path, b)
		}
	}
	return resp.StatusCode, resp.Header, out
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func errMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// get walks a decoded JSON document: get(doc, "properties", "containers", 0, "name").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

const (
	sub    = "00000000-0000-0000-0000-000000000001"
	rgPath = "/subscriptions/" + sub + "/resourcegroups/rg1"
	cgPath = "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups/"
	apiV   = "?api-version=2023-05-01"
)

const validGroup = `{
  "location": "West US",
  "tags": {"env": "test"},
  "properties": {
    "osType": "Linux",
    "containers": [{
      "name": "web",
      "properties": {
        "image": "registry.local/hello:1",
        "command": ["/hello", "--port", "80"],
        "ports": [{"port": 80}],
        "environmentVariables": [
          {"name": "GREETING", "value": "hi"},
          {"name": "API_KEY", "secureValue": "s3cr3t-value"}
        ],
        "resources": {"requests": {"cpu": 1, "memoryInGB": 0.5}}
      }
    }],
    "ipAddress": {"type": "Public", "ports": [{"port": 80, "protocol": "TCP"}]}
  }
}`

func (e *env) createRG() {
	e.t.Helper()
	if code, _, body := e.do("PUT", rgPath+"?api-version=2021-04-01", `{"location":"westus"}`); code != http.StatusCreated {
		e.t.Fatalf("create resource group: %d %v", code, body)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name     string
		auth     string
		wantCode string
	}{
		{"no Authorization header", "", "AuthenticationFailed"},
		{"wrong token", "Bearer nope", "InvalidAuthenticationToken"},
		{"not a bearer token", "Basic " + testToken, "InvalidAuthenticationToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := e.doAuth("GET", "/subscriptions/"+sub+"/resourcegroups", "", tt.auth)
			if code != http.StatusUnauthorized || errCode(body) != tt.wantCode {
				t.Errorf("got %d %q, want 401 %q", code, errCode(body), tt.wantCode)
			}
		})
	}
}

// TestAuthorization: a principal limited to one subscription gets the same
// 403 AuthorizationFailed on every route of another subscription, whether
// the resource exists or not, and works normally in its own.
func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	e.createRG()
	if code, _, body := e.do("PUT", cgPath+"cg1"+apiV, validGroup); code != http.StatusCreated {
		t.Fatalf("create group: %d %v", code, body)
	}
	subPath := "/subscriptions/" + sub
	routes := []struct{ method, path, body string }{
		{"GET", subPath + "/resourcegroups?api-version=2021-04-01", ""},
		{"GET", rgPath + "?api-version=2021-04-01", ""},
		{"PUT", rgPath + "?api-version=2021-04-01", `{"location":"westus"}`},
		{"DELETE", rgPath + "?api-version=2021-04-01", ""},
		{"GET", subPath + "/providers/Microsoft.ContainerInstance/containerGroups" + apiV, ""},
		{"GET", subPath + "/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups" + apiV, ""},
		{"GET", cgPath + "%s" + apiV, ""},
		{"PUT", cgPath + "%s" + apiV, validGroup},
		{"PATCH", cgPath + "%s" + apiV, `{"tags":{"a":"b"}}`},
		{"DELETE", cgPath + "%s" + apiV, ""},
		{"POST", cgPath + "%s/stop" + apiV, ""},
		{"POST", cgPath + "%s/start" + apiV, ""},
		{"POST", cgPath + "%s/restart" + apiV, ""},
		{"GET", cgPath + "%s/outboundNetworkDependenciesEndpoints" + apiV, ""},
		{"GET", cgPath + "%s/containers/web/logs" + apiV, ""},
		{"POST", cgPath + "%s/containers/web/exec" + apiV, `{"command":"/bin/sh"}`},
		{"POST", cgPath + "%s/containers/web/attach" + apiV, ""},
		{"GET", subPath + "/providers/Microsoft.ContainerInstance/locations/westus/operations/x?api-version=2018-06-01", ""},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			var bodies []map[string]any
			for _, name := range []string{"cg1", "missing"} {
				path := rt.path
				if strings.Contains(path, "%s") {
					path = fmt.Sprintf(path, name)
				}
				code, _, body := e.doAuth(rt.method, path, rt.body, "Bearer "+tenantToken)
				if code != http.StatusForbidden || errCode(body) != "AuthorizationFailed" {
					t.Fatalf("%s: got %d %v, want 403 AuthorizationFailed", name, code, body)
				}
				bodies = append(bodies, body)
			}
			// Only the name in the path may differ: existence must not show.
			a := strings.ReplaceAll(errMessage(bodies[0]), "cg1", "missing")
			if a != errMessage(bodies[1]) {
				t.Errorf("the answers for an existing and a missing group differ:\n%s\n%s", errMessage(bodies[0]), errMessage(bodies[1]))
			}
		})
	}
	// The group is untouched by all of that.
	if code, _, body := e.do("GET", cgPath+"cg1"+apiV, ""); code != http.StatusOK || get(body, "tags", "a") != nil {
		t.Fatalf("group after the refused requests: %d %v", code, body)
	}
	// In its own subscription the principal works as usual and sees only its own.
	own := "/subscriptions/" + tenantSub
	if code, _, body := e.doAuth("PUT", own+"/resourcegroups/mine?api-version=2021-04-01", `{"location":"westus"}`, "Bearer "+tenantToken); code != http.StatusCreated {
		t.Fatalf("own resource group: %d %v", code, body)
	}
	code, _, body := e.doAuth("GET", own+"/providers/Microsoft.ContainerInstance/containerGroups"+apiV, "", "Bearer "+tenantToken)
	if code != http.StatusOK {
		t.Fatalf("own list: %d %v", code, body)
	}
	if v, _ := body["value"].([]any); len(v) != 0 {
		t.Errorf("own list shows %d groups, want 0: %v", len(v), v)
	}
}

func TestAPIVersion(t *testing.T) {
	e := newEnv(t)
	e.createRG()
	tests := []struct {
		name     string
		query    string
		wantCode string
	}{
		{"missing", "", "MissingApiVersionParameter"},
		{"unsupported", "?api-version=2019-12-01", "InvalidApiVersionParameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := e.do("GET", cgPath+"g1"+tt.query, "")
			if code != http.StatusBadRequest || errCode(body) != tt.wantCode {
				t.Errorf("got %d %q, want 400 %q", code, errCode(body), tt.wantCode)
			}
		})
	}
}

func TestResourceGroups(t *testing.T) {
	e := newEnv(t)
	if code, _, body := e.do("PUT", rgPath, `{"location":"West US","tags":{"a":"b"}}`); code != http.StatusCreated || body["location"] != "westus" {
		t.Fatalf("create: %d %v", code, body)
	}
	if code, _, _ := e.do("PUT", rgPath, `{"location":"westus"}`); code != http.StatusOK {
		t.Fatalf("second PUT = %d, want 200", code)
	}
	if code, _, body := e.do("PUT", rgPath, `{"location":"eastus"}`); code != http.StatusConflict {
		t.Fatalf("PUT in another location = %d %v, want 409", code, body)
	}
	// Fixed path segments match without case, as ARM's do.
	code, _, body := e.do("GET", "/SUBSCRIPTIONS/"+sub+"/resourceGroups/rg1", "")
	if code != http.StatusOK || body["id"] != "/subscriptions/"+sub+"/resourceGroups/rg1" {
		t.Fatalf("get: %d %v", code, body)
	}
	_, _, list := e.do("GET", "/subscriptions/"+sub+"/resourcegroups", "")
	if n := len(get(list, "value").([]any)); n != 1 {
		t.Fatalf("list has %d groups, want 1", n)
	}
	_, _, other := e.do("GET", "/subscriptions/another/resourcegroups", "")
	if n := len(get(other, "value").([]any)); n != 0 {
		t.Fatalf("another subscription sees %d groups, want 0", n)
	}
	if code, _, _ := e.do("DELETE", rgPath, ""); code != http.StatusOK {
		t.Fatalf("delete = %d", code)
	}
	if code, _, body := e.do("GET", rgPath, ""); code != http.StatusNotFound || errCode(body) != "ResourceGroupNotFound" {
		t.Fatalf("get after delete: %d %v", code, body)
	}
	if code, _, body := e.do("PUT", "/subscriptions/"+sub+"/resourcegroups/bad.", `{"location":"westus"}`); code != http.StatusBadRequest {
		t.Fatalf("bad name: %d %v", code, body)
	}
}

func TestPutGroup_ValidationStoresNothing(t *testing.T) {
	e := newEnv(t)
	e.createRG()
	mutate := func(old, new string) string {
		if !strings.Contains(validGroup, old) {
			t.Fatalf("test body has no %q", old)
		}
		return strings.Replace(validGroup, old, new, 1)
	}
	tests := []struct {
		name     string
		group    string
		body     string
		wantCode string
	}{
		{"malformed JSON", "g1", `{"location": "westus", "properties": {`, "InvalidRequestContent"},
		{"JSON of the wrong shape", "g1", `{"location": "westus", "properties": {"containers": "web"}}`, "InvalidRequestContent"},
		{"group name with capitals", "Bad_Name", validGroup, "InvalidContainerGroupName"},
		{"no location", "g1", mutate(`"location": "West US",`, ""), "LocationRequired"},
		{"no osType", "g1", mutate(`"osType": "Linux",`, ""), "InvalidOsType"},
		{"Windows", "g1", mutate(`"osType": "Linux"`, `"osType": "Windows"`), "UnsupportedOsType"},
		{"bad restart policy", "g1", mutate(`"osType": "Linux",`, `"osType": "Linux", "restartPolicy": "Sometimes",`), "InvalidRestartPolicy"},
		{"bad container name", "g1", mutate(`"name": "web"`, `"name": "Web_1"`), "InvalidContainerName"},
		{"no image", "g1", mutate(`"image": "registry.local/hello:1",`, ""), "InvalidContainerImage"},
		{"no resources", "g1", mutate(`"resources": {"requests": {"cpu": 1, "memoryInGB": 0.5}}`, `"resources": {}`), "InvalidContainerResources"},
		{"zero cpu", "g1", mutate(`"cpu": 1`, `"cpu": 0`), "InvalidContainerResources"},
		{"too much memory", "g1", mutate(`"memoryInGB": 0.5`, `"memoryInGB": 512`), "InvalidContainerResources"},
		{"limit below request", "g1", mutate(`"requests": {"cpu": 1, "memoryInGB": 0.5}`, `"requests": {"cpu": 1, "memoryInGB": 0.5}, "limits": {"cpu": 0.5}`), "InvalidContainerResources"},
		{"port out of range", "g1", mutate(`"ports": [{"port": 80}]`, `"ports": [{"port": 70000}]`), "InvalidPort"},
		{"bad protocol", "g1", mutate(`"protocol": "TCP"`, `"protocol": "SCTP"`), "InvalidPortProtocol"},
		{"group port no container exposes", "g1", mutate(`"ports": [{"port": 80, "protocol": "TCP"}]`, `"ports": [{"port": 81}]`), "InvalidIpAddressPorts"},
		{"bad IP type", "g1", mutate(`"type": "Public"`, `"type": "Elastic"`), "InvalidIpAddressType"},
		{"env with value and secure value", "g1", mutate(`{"name": "GREETING", "value": "hi"}`, `{"name": "GREETING", "value": "hi", "secureValue": "x"}`), "InvalidEnvironmentVariable"},
		{"no containers", "g1", `{"location":"westus","properties":{"osType":"Linux","containers":[]}}`, "NoContainersInContainerGroup"},
		{"no properties", "g1", `{"location":"westus"}`, "MissingRequiredProperty"},
		{"a port declared twice", "g1", mutate(`"ports": [{"port": 80}]`, `"ports": [{"port": 80}, {"port": 80, "protocol": "tcp"}]`), "DuplicatePort"},
		{"more cpu than a group may have", "g1", `{"location":"westus","properties":{"osType":"Linux","containers":[
			  {"name":"a","properties":{"image":"i","resources":{"requests":{"cpu":3,"memoryInGB":1}}}},
			  {"name":"b","properties":{"image":"i","resources":{"requests":{"cpu":2,"memoryInGB":1}}}}]}}`, "ContainerGroupResourcesExceeded"},
		{"more containers than ACI allows", "g1", manyContainers(61), "TooManyContainers"},
		{"probe without exec or httpGet", "g1", mutate(`"ports": [{"port": 80}],`, `"ports": [{"port": 80}], "livenessProbe": {"periodSeconds": 5},`), "InvalidProbe"},
		{"probe with period 0", "g1", mutate(`"ports": [{"port": 80}],`, `"ports": [{"port": 80}], "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 0},`), "InvalidProbe"},
		{"init container with ports", "g1", mutate(`"ipAddress"`, `"initContainers": [{"name": "init", "properties": {"image": "i", "ports": [{"port": 1}]}}], "ipAddress"`), "InvalidInitContainer"},
		{"init container named like a container", "g1", mutate(`"ipAddress"`, `"initContainers": [{"name": "web", "properties": {"image": "i"}}], "ipAddress"`), "DuplicateContainerName"},
		{"init container without image", "g1", mutate(`"ipAddress"`, `"initContainers": [{"name": "init", "properties": {}}], "ipAddress"`), "InvalidContainerImage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := e.do("PUT", cgPath+tt.group+apiV, tt.body)
			if code != http.StatusBadRequest || errCode(body) != tt.wantCode {
				t.Fatalf("got %d %v, want 400 %s", code, body, tt.wantCode)
			}
			if errMessage(body) == "" {
				t.Error("error has no message")
			}
			kvs, _, err := e.store.List(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range kvs {
				if !strings.HasPrefix(kv.Key, types.PrefixResourceGroups) {
					t.Errorf("a refused request left %q in the store", kv.Key)
				}
			}
		})
	}
}

func TestPutGroup_MissingResourceGroup(t *testing.T) {
	e := newEnv(t)
	code, _, body := e.do("PUT", cgPath+"g1"+apiV, validGroup)
	if code != http.StatusNotFound || errCode(body) != "ResourceGroupNotFound" {
		t.Fatalf("got %d %v, want 404 ResourceGroupNotFound", code, body)
	}
}

func TestGroupLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.createRG()

	code, hdr, body := e.do("PUT", cgPath+"g1"+apiV, validGroup)
	if code != http.StatusCreated {
		t.Fatalf("create = %d %v", code, body)
	}
	if got := get(body, "properties", "provisioningState"); got != "Pending" {
		t.Errorf("provisioningState = %v, want Pending", got)
	}
	if hdr.Get("Retry-After") == "" {
		t.Error("no Retry-After header")
	}
	opURL := hdr.Get("Azure-AsyncOperation")
	wantPrefix := e.srv.URL + "/subscriptions/" + sub + "/providers/Microsoft.ContainerInstance/locations/westus/operations/"
	if !strings.HasPrefix(opURL, wantPrefix) {
		t.Fatalf("Azure-AsyncOperation = %q, want prefix %q", opURL, wantPrefix)
	}
	raw, _ := json.Marshal(body)
	if strings.Contains(string(raw), "s3cr3t-value") {
		t.Fatal("the response carries the secure value")
	}
	if got := get(body, "properties", "containers", 0, "properties", "environmentVariables", 0, "value"); got != "hi" {
		t.Errorf("plain env value = %v, want hi", got)
	}
	opPath := strings.TrimPrefix(opURL, e.srv.URL)
	if _, _, op := e.do("GET", opPath, ""); op["status"] != "Pending" {
		t.Fatalf("operation before the agent ran = %v, want Pending", op)
	}

	// What the agent reports turns the operation and the group to Succeeded.
	g, _, err := store.NewTyped[types.ContainerGroup](e.store, types.PrefixGroups).Get(ctx, types.GroupKey(sub, "rg1", "g1"))
	if err != nil {
		t.Fatal(err)
	}
	st := types.GroupStatus{UID: g.UID, ObservedGeneration: g.Generation, ProvisioningState: "Succeeded", IP: "10.1.2.3", State: "Running",
		Containers: []types.ContainerStatus{{Name: "web", Current: types.ContainerState{State: "Running"}}}}
	if _, err := store.NewTyped[types.GroupStatus](e.store, types.PrefixGroupStatus).Put(ctx, g.Key(), st); err != nil {
		t.Fatal(err)
	}
	if _, _, op := e.do("GET", opPath, ""); op["status"] != "Succeeded" || op["id"] != "/subscriptions/"+sub+"/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups/g1" {
		t.Fatalf("operation after the agent = %v", op)
	}
	_, _, got := e.do("GET", cgPath+"g1"+apiV, "")
	for _, c := range []struct {
		path []any
		want any
	}{
		{[]any{"properties", "provisioningState"}, "Succeeded"},
		{[]any{"properties", "ipAddress", "ip"}, "10.1.2.3"},
		{[]any{"properties", "instanceView", "state"}, "Running"},
		{[]any{"properties", "containers", 0, "properties", "instanceView", "currentState", "state"}, "Running"},
		{[]any{"location"}, "westus"},
		{[]any{"type"}, "Microsoft.ContainerInstance/containerGroups"},
	} {
		if v := get(got, c.path...); v != c.want {
			t.Errorf("GET %v = %v, want %v", c.path, v, c.want)
		}
	}

	// Lists leave the instance view out, as ACI does.
	for _, p := range []string{
		"/subscriptions/" + sub + "/providers/Microsoft.ContainerInstance/containerGroups" + apiV,
		"/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups" + apiV,
	} {
		code, _, list := e.do("GET", p, "")
		if code != http.StatusOK || get(list, "value", 0, "name") != "g1" || get(list, "value", 1) != nil {
			t.Fatalf("list %s = %d %v", p, code, list)
		}
		if get(list, "value", 0, "properties", "instanceView") != nil {
			t.Errorf("list %s has an instance view", p)
		}
		// ... but what the agent reported, read in one range read.
		if get(list, "value", 0, "properties", "provisioningState") != "Succeeded" || get(list, "value", 0, "properties", "ipAddress", "ip") != "10.1.2.3" {
			t.Errorf("list %s lacks the reported state and IP: %v", p, list)
		}
	}

	// Logs, from the node the group is bound to.
	bind(t, e.store, g.Key(), testNode)
	if _, _, logs := e.do("GET", cgPath+"g1/containers/web/logs"+apiV+"&tail=2", ""); logs["content"] != "two\nthree\n" {
		t.Errorf("logs tail=2 = %q", logs["content"])
	}
	if code, _, body := e.do("GET", cgPath+"g1/containers/nope/logs"+apiV, ""); code != http.StatusNotFound || errCode(body) != "ContainerNotFound" {
		t.Errorf("logs of unknown container = %d %v", code, body)
	}
	if code, _, body := e.do("GET", cgPath+"g1/containers/web/logs"+apiV+"&tail=x", ""); code != http.StatusBadRequest {
		t.Errorf("logs with bad tail = %d %v", code, body)
	}

	// Delete is accepted and finishes once the agent removed the group.
	code, hdr, _ = e.do("DELETE", cgPath+"g1"+apiV, "")
	if code != http.StatusAccepted || hdr.Get("Azure-AsyncOperation") == "" {
		t.Fatalf("delete = %d, async header %q", code, hdr.Get("Azure-AsyncOperation"))
	}
	delOp := strings.TrimPrefix(hdr.Get("Azure-AsyncOperation"), e.srv.URL)
	if _, _, op := e.do("GET", delOp, ""); op["status"] != "Pending" {
		t.Fatalf("delete operation before the agent = %v", op)
	}
	if _, _, g := e.do("GET", cgPath+"g1"+apiV, ""); get(g, "properties", "provisioningState") != "Deleting" {
		t.Errorf("group being deleted shows %v", get(g, "properties", "provisioningState"))
	}
	if err := e.store.Delete(ctx, types.PrefixGroups+g.Key(), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, op := e.do("GET", delOp, ""); op["status"] != "Succeeded" {
		t.Fatalf("delete operation after the agent = %v", op)
	}
	if code, _, body := e.do("GET", cgPath+"g1"+apiV, ""); code != http.StatusNotFound || errCode(body) != "ResourceNotFound" {
		t.Fatalf("get after delete = %d %v", code, body)
	}
	if code, _, _ := e.do("DELETE", cgPath+"g1"+apiV, ""); code != http.StatusNoContent {
		t.Fatalf("delete of a missing group = %d, want 204", code)
	}
}

func TestPutGroup_FailedDeploymentFailsOperation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.createRG()
	_, hdr, _ := e.do("PUT", cgPath+"g2"+apiV, validGroup)
	g, _, err := store.NewTyped[types.ContainerGroup](e.store, types.PrefixGroups).Get(ctx, types.GroupKey(sub, "rg1", "g2"))
	if err != nil {
		t.Fatal(err)
	}
	st := types.GroupStatus{UID: g.UID, ObservedGeneration: 1, ProvisioningState: "Failed", ErrorCode: "InaccessibleImage", ErrorMessage: "The image 'x' is not accessible."}
	if _, err := store.NewTyped[types.GroupStatus](e.store, types.PrefixGroupStatus).Put(ctx, g.Key(), st); err != nil {
		t.Fatal(err)
	}
	_, _, op := e.do("GET", strings.TrimPrefix(hdr.Get("Azure-AsyncOperation"), e.srv.URL), "")
	if op["status"] != "Failed" || get(op, "error", "code") != "InaccessibleImage" {
		t.Fatalf("operation = %v, want Failed with InaccessibleImage", op)
	}
}

func TestPutGroup_UpdateRules(t *testing.T) {
	e := newEnv(t)
	e.createRG()
	if code, _, _ := e.do("PUT", cgPath+"g3"+apiV, validGroup); code != http.StatusCreated {
		t.Fatal("create failed")
	}
	generation := func() int64 {
		g, _, err := store.NewTyped[types.ContainerGroup](e.store, types.PrefixGroups).Get(context.Background(), types.GroupKey(sub, "rg1", "g3"))
		if err != nil {
			t.Fatal(err)
		}
		return g.Generation
	}
	tests := []struct {
		name     string
		body     string
		wantCode int
		wantErr  string
		wantGen  int64
	}{
		{"a tag change keeps the containers", strings.Replace(validGroup, `"env": "test"`, `"env": "prod"`, 1), 200, "", 1},
		{"a new image redeploys", strings.Replace(validGroup, `hello:1`, `hello:2`, 1), 200, "", 2},
		{"new env redeploys", strings.Replace(strings.Replace(validGroup, `hello:1`, `hello:2`, 1), `"value": "hi"`, `"value": "ho"`, 1), 200, "", 3},
		{"cpu cannot change", strings.Replace(validGroup, `"cpu": 1`, `"cpu": 2`, 1), 400, "InvalidContainerGroupUpdate", 3},
		{"memory cannot change", strings.Replace(validGroup, `"memoryInGB": 0.5`, `"memoryInGB": 1`, 1), 400, "InvalidContainerGroupUpdate", 3},
		{"restart policy cannot change", strings.Replace(validGroup, `"osType": "Linux",`, `"osType": "Linux", "restartPolicy": "Never",`, 1), 400, "InvalidContainerGroupUpdate", 3},
		{"the network cannot change", strings.Replace(validGroup, `,
    "ipAddress": {"type": "Public", "ports": [{"port": 80, "protocol": "TCP"}]}`, "", 1), 400, "InvalidContainerGroupUpdate", 3},
		{"the location cannot change", strings.Replace(validGroup, `"West US"`, `"East US"`, 1), 400, "InvalidContainerGroupUpdate", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := e.do("PUT", cgPath+"g3"+apiV, tt.body)
			if code != tt.wantCode || errCode(body) != tt.wantErr {
				t.Fatalf("PUT = %d %v, want %d %q", code, body, tt.wantCode, tt.wantErr)
			}
			if code == 200 && hdr.Get("Azure-AsyncOperation") == "" {
				t.Error("update without an operation header")
			}
			if g := generation(); g != tt.wantGen {
				t.Errorf("generation = %d, want %d", g, tt.wantGen)
			}
		})
	}
}

func TestGroupOperations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.createRG()
	if code, _, _ := e.do("PUT", cgPath+"g4"+apiV, validGroup); code != http.StatusCreated {
		t.Fatal("create failed")
	}
	groups := store.NewTyped[types.ContainerGroup](e.store, types.PrefixGroups)
	load := func() types.ContainerGroup {
		g, _, err := groups.Get(ctx, types.GroupKey(sub, "rg1", "g4"))
		if err != nil {
			t.Fatal(err)
		}
		return g
	}

	code, _, body := e.do("PATCH", cgPath+"g4"+apiV, `{"tags":{"team":"a"}}`)
	if code != http.StatusOK || get(body, "tags", "team") != "a" || load().Generation != 1 {
		t.Fatalf("PATCH = %d %v (generation %d)", code, body, load().Generation)
	}

	if code, _, _ := e.do("POST", cgPath+"g4/start"+apiV, ""); code != http.StatusNoContent {
		t.Fatalf("start of a running group = %d, want 204", code)
	}
	code, hdr, _ := e.do("POST", cgPath+"g4/restart"+apiV, "")
	if code != http.StatusNoContent || load().Restarts != 1 || hdr.Get("Azure-AsyncOperation") == "" {
		t.Fatalf("restart = %d, restarts %d, header %q", code, load().Restarts, hdr.Get("Azure-AsyncOperation"))
	}
	restartOp := strings.TrimPrefix(hdr.Get("Azure-AsyncOperation"), e.srv.URL)
	g := load()
	st := types.GroupStatus{UID: g.UID, ObservedGeneration: 1, ProvisioningState: "Succeeded"}
	statuses := store.NewTyped[types.GroupStatus](e.store, types.PrefixGroupStatus)
	if _, err := statuses.Put(ctx, g.Key(), st); err != nil {
		t.Fatal(err)
	}
	if _, _, op := e.do("GET", restartOp, ""); op["status"] != "Pending" {
		t.Fatalf("restart operation before the agent restarted = %v", op["status"])
	}
	st.ObservedRestarts = 1
	if _, err := statuses.Put(ctx, g.Key(), st); err != nil {
		t.Fatal(err)
	}
	if _, _, op := e.do("GET", restartOp, ""); op["status"] != "Succeeded" {
		t.Fatalf("restart operation after the agent restarted = %v", op["status"])
	}

	if code, _, _ := e.do("POST", cgPath+"g4/stop"+apiV, ""); code != http.StatusNoContent || !load().Stopped {
		t.Fatalf("stop = %d, stopped %v", code, load().Stopped)
	}
	if code, _, body := e.do("POST", cgPath+"g4/restart"+apiV, ""); code != http.StatusConflict || errCode(body) != "ContainerGroupStopped" {
		t.Fatalf("restart of a stopped group = %d %v", code, body)
	}
	code, hdr, _ = e.do("POST", cgPath+"g4/start"+apiV, "")
	if code != http.StatusAccepted || hdr.Get("Azure-AsyncOperation") == "" || load().Stopped || load().Generation != 2 {
		t.Fatalf("start = %d, header %q, group %+v", code, hdr.Get("Azure-AsyncOperation"), load())
	}
	if code, _, body := e.do("GET", cgPath+"g4/outboundNetworkDependenciesEndpoints"+apiV, ""); code != http.StatusOK || body == nil || len(body["array"].([]any)) != 0 {
		t.Fatalf("outbound dependencies = %d %v", code, body)
	}
	if code, _, body := e.do("POST", cgPath+"nope/stop"+apiV, ""); code != http.StatusNotFound || errCode(body) != "ResourceNotFound" {
		t.Fatalf("stop of a missing group = %d %v", code, body)
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerInstance/containerGroups/N",
			"/subscriptions/S/resourcegroups/RG/providers/microsoft.containerinstance/containergroups/N"},
		{"/subscriptions/S/resourcegroups/RG/providers/Microsoft.ContainerInstance//containerGroups/N",
			"/subscriptions/S/resourcegroups/RG/providers/microsoft.containerinstance/containergroups/N"},
		{"/providers/Microsoft.ContainerInstance/operations", "/providers/microsoft.containerinstance/operations"},
	}
	for _, tt := range tests {
		if got := normalizePath(tt.in); got != tt.want {
			t.Errorf("normalizePath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// manyContainers is a group body with n small containers.
func manyContainers(n int) string {
	var cs []string
	for i := range n {
		cs = append(cs, fmt.Sprintf(`{"name":"c%d","properties":{"image":"i","resources":{"requests":{"cpu":0.01,"memoryInGB":0.01}}}}`, i))
	}
	return `{"location":"westus","properties":{"osType":"Linux","containers":[` + strings.Join(cs, ",") + `]}}`
}
