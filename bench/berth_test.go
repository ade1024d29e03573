package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	armv1 "github.com/berth-dev/berth/api/v20230501"
)

// berthAPI is a thin ARM client for the one server under test. It keeps
// one transport, so that polls reuse TLS connections as the SDK does,
// instead of testenv.Server.Do's client per request.
type berthAPI struct {
	hc       *http.Client
	endpoint string
	token    string
	sub, rg  string
	ops      sync.Map // group name → Azure-AsyncOperation URL of its last PUT
}

func (b *berthAPI) groupPath(name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourcegroups/%s/providers/microsoft.containerinstance/containergroups/%s?api-version=%s",
		b.sub, b.rg, url.PathEscape(name), armv1.APIVersion)
}

func (b *berthAPI) listPath() string {
	return fmt.Sprintf("/subscriptions/%s/resourcegroups/%s/providers/microsoft.containerinstance/containergroups?api-version=%s",
		b.sub, b.rg, armv1.APIVersion)
}

// do sends one request and decodes a JSON answer into out when out is not
// nil. It returns the status code; a transport error is the only error.
func (b *berthAPI) do(ctx context.Context, method, path string, body, out any) (int, error) {
	code, _, err := b.doHeader(ctx, method, path, body, out)
	return code, err
}

// doHeader is do that also returns the response headers.
func (b *berthAPI) doHeader(ctx context.Context, method, path string, body, out any) (int, http.Header, error) {
	var r io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.endpoint+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, resp.Header, fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, resp.Header, nil
}

func (b *berthAPI) createResourceGroup(ctx context.Context) error {
	path := fmt.Sprintf("/subscriptions/%s/resourcegroups/%s?api-version=2021-04-01", b.sub, b.rg)
	_, err := b.do(ctx, http.MethodPut, path, map[string]string{"location": "westus"}, nil)
	return err
}

// put creates or updates a group and remembers its operation, whose
// error explains a failed deployment.
func (b *berthAPI) put(ctx context.Context, name string, g armv1.ContainerGroup) error {
	_, h, err := b.doHeader(ctx, http.MethodPut, b.groupPath(name), g, nil)
	if err == nil {
		b.ops.Store(name, h.Get("Azure-AsyncOperation"))
	}
	return err
}

// deployError is a group the agent could not deploy: a finding of the
// run, not a failure of the harness.
type deployError struct {
	name, reason string
}

func (e *deployError) Error() string { return fmt.Sprintf("group %s failed: %s", e.name, e.reason) }

// failure returns the deployError of a Failed group, with the error of
// its last operation.
func (b *berthAPI) failure(ctx context.Context, name string) error {
	reason := "unknown"
	if v, ok := b.ops.Load(name); ok && v.(string) != "" {
		var op struct {
			Status string `json:"status"`
			Error  struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if u, err := url.Parse(v.(string)); err == nil {
			if _, err := b.do(ctx, http.MethodGet, u.RequestURI(), nil, &op); err == nil {
				reason = op.Error.Code + ": " + op.Error.Message
			}
		}
	}
	return &deployError{name: name, reason: reason}
}

func (b *berthAPI) get(ctx context.Context, name string) (armv1.ContainerGroup, int, error) {
	var g armv1.ContainerGroup
	code, err := b.do(ctx, http.MethodGet, b.groupPath(name), nil, &g)
	return g, code, err
}

func (b *berthAPI) list(ctx context.Context) ([]armv1.ContainerGroup, error) {
	var all []armv1.ContainerGroup
	// Page after page, as a client follows ARM's nextLink.
	for path := b.listPath(); path != ""; {
		var l armv1.ContainerGroupList
		if _, err := b.do(ctx, http.MethodGet, path, nil, &l); err != nil {
			return all, err
		}
		all = append(all, l.Value...)
		path = ""
		if l.NextLink != "" {
			u, err := url.Parse(l.NextLink)
			if err != nil {
				return all, fmt.Errorf("nextLink %q: %w", l.NextLink, err)
			}
			path = u.RequestURI()
		}
	}
	return all, nil
}

// remove sends DELETE and, when wait is set, polls until the group is
// gone (the agent deleted it after tearing everything down).
func (b *berthAPI) remove(ctx context.Context, name string, wait bool) error {
	if _, err := b.do(ctx, http.MethodDelete, b.groupPath(name), nil, nil); err != nil {
		return err
	}
	for wait {
		_, code, err := b.get(ctx, name)
		if code == http.StatusNotFound {
			return nil
		}
		if serr := sleepCtx(ctx, 50*time.Millisecond); serr != nil {
			return fmt.Errorf("group %s still there: %w (last error %v)", name, serr, err)
		}
	}
	return nil
}

// groupSnapshot is what the harness reads from a group.
type groupSnapshot struct {
	provisioning string
	ip           string
}

func snapshotOf(g armv1.ContainerGroup) groupSnapshot {
	var s groupSnapshot
	if p := g.Properties; p != nil {
		s.provisioning = p.ProvisioningState
		if p.IPAddress != nil {
			s.ip = p.IPAddress.IP
		}
	}
	return s
}

// startResult is the timing of one group create.
type startResult struct {
	// start is when the request was sent.
	start time.Time
	// group is a GET of the group once it ran: its events date each
	// phase of the start.
	group armv1.ContainerGroup
	// running is request sent → every probe answered.
	running time.Duration
	// succeeded is request sent → first GET showing Succeeded.
	succeeded time.Duration
}

// createAndWait PUTs g, then polls GET every pollEvery until the group is
// Succeeded and, once its IP is known, probes every port until each
// answers. The clock starts just before the PUT is sent.
func (b *berthAPI) createAndWait(ctx context.Context, name string, g armv1.ContainerGroup, probes []probeSpec, pollEvery time.Duration) (startResult, error) {
	var res startResult
	start := time.Now()
	res.start = start
	if err := b.put(ctx, name, g); err != nil {
		return res, err
	}
	var (
		once     sync.Once
		probeErr = make(chan error, 1)
	)
	for res.succeeded == 0 || res.running == 0 {
		select {
		case err := <-probeErr:
			if err != nil {
				return res, fmt.Errorf("group %s: %w", name, err)
			}
			res.running = time.Since(start)
			probeErr = nil // answered; stop selecting on it
			continue
		default:
		}
		if res.succeeded == 0 {
			cg, _, err := b.get(ctx, name)
			if err != nil {
				return res, err
			}
			s := snapshotOf(cg)
			switch s.provisioning {
			case "Succeeded":
				res.succeeded = time.Since(start)
			case "Failed":
				return res, b.failure(ctx, name)
			}
			if s.ip != "" {
				once.Do(func() {
					go func() { probeErr <- waitAnswers(ctx, s.ip, probes) }()
				})
			}
		}
		if res.succeeded != 0 && probeErr != nil {
			// Only the probes are left: wait for them without polling.
			select {
			case err := <-probeErr:
				if err != nil {
					return res, fmt.Errorf("group %s: %w", name, err)
				}
				res.running = time.Since(start)
				probeErr = nil
			case <-ctx.Done():
				return res, fmt.Errorf("group %s: %w", name, ctx.Err())
			}
			continue
		}
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return res, fmt.Errorf("group %s not running: %w", name, err)
		}
	}
	return res, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// helloGroup is a one-container group of the hello image on port 80, with
// the resources of the e2e tests' group.
func helloGroup(image string) armv1.ContainerGroup {
	return armv1.ContainerGroup{
		Location: "westus",
		Properties: &armv1.ContainerGroupProperties{
			OSType:        "Linux",
			RestartPolicy: "Always",
			Containers: []armv1.Container{{
				Name: "hello",
				Properties: &armv1.ContainerProperties{
					Image:     image,
					Resources: &armv1.ResourceRequirements{Requests: &armv1.ResourceRequests{CPU: ptr(1.0), MemoryInGB: ptr(0.5)}},
					Ports:     []armv1.ContainerPort{{Port: ptr[int32](80), Protocol: "TCP"}},
				},
			}},
			IPAddress: &armv1.IPAddress{
				Type:  "Public",
				Ports: []armv1.Port{{Port: ptr[int32](80), Protocol: "TCP"}},
			},
		},
	}
}

// pairGroup is the two-container group: hello on port 80 and busybox's
// httpd on port 8080 serving a file it first writes into the shared
// emptyDir, so that an answer on 8080 proves the volume is mounted and
// writable.
func pairGroup(hello, busybox string) armv1.ContainerGroup {
	g := helloGroup(hello)
	p := g.Properties
	p.Volumes = []armv1.Volume{{Name: "shared", EmptyDir: map[string]any{}}}
	p.Containers[0].Properties.VolumeMounts = []armv1.VolumeMount{{Name: "shared", MountPath: "/data"}}
	p.Containers = append(p.Containers, armv1.Container{
		Name: "web",
		Properties: &armv1.ContainerProperties{
			Image:        busybox,
			Command:      []string{"/bin/sh", "-c", pairWebScript},
			Resources:    &armv1.ResourceRequirements{Requests: &armv1.ResourceRequests{CPU: ptr(0.5), MemoryInGB: ptr(0.25)}},
			Ports:        []armv1.ContainerPort{{Port: ptr[int32](8080), Protocol: "TCP"}},
			VolumeMounts: []armv1.VolumeMount{{Name: "shared", MountPath: "/data"}},
		},
	})
	p.IPAddress.Ports = append(p.IPAddress.Ports, armv1.Port{Port: ptr[int32](8080), Protocol: "TCP"})
	return g
}

// pairWebScript writes the page into the shared volume and serves it.
//
// busybox httpd ignores SIGTERM as PID 1, which would make every delete
// wait for the 10 s grace period: the shell stays PID 1 and exits on it.
const pairWebScript = "echo shared-ok > /data/index.html; trap 'exit 0' TERM; httpd -f -p 8080 -h /data & wait $!"

// phases splits one start by the agent's container events (timestamps in
// nanoseconds, from the same clock as the harness).
type phases struct {
	toPulling time.Duration // request → Pulling: API, store, watch, network namespace and CNI, group files
	pull      time.Duration // Pulling → Pulled: image resolve (cached)
	create    time.Duration // Pulled → Created: containerd container, snapshot, spec, task (shim, runc create)
	start     time.Duration // Created → Started: task start
	toAnswer  time.Duration // Started → first answer: the workload's own start, probe interval
}

func phasesOf(r startResult) (phases, error) {
	p := r.group.Properties
	if p == nil || len(p.Containers) == 0 || p.Containers[0].Properties == nil || p.Containers[0].Properties.InstanceView == nil {
		return phases{}, fmt.Errorf("group has no container instance view")
	}
	at := map[string]time.Time{}
	for _, e := range p.Containers[0].Properties.InstanceView.Events {
		ts, err := time.Parse(time.RFC3339Nano, e.FirstTimestamp)
		if err != nil {
			return phases{}, fmt.Errorf("event %s: %w", e.Name, err)
		}
		at[e.Name] = ts
	}
	for _, n := range []string{"Pulling", "Pulled", "Created", "Started"} {
		if at[n].IsZero() {
			return phases{}, fmt.Errorf("no %s event", n)
		}
	}
	return phases{
		toPulling: at["Pulling"].Sub(r.start),
		pull:      at["Pulled"].Sub(at["Pulling"]),
		create:    at["Created"].Sub(at["Pulled"]),
		start:     at["Started"].Sub(at["Created"]),
		toAnswer:  r.start.Add(r.running).Sub(at["Started"]),
	}, nil
}
