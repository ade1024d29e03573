package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

// prober runs the liveness and readiness probes of one container. It only
// records verdicts and wakes the group; the reconcile pass acts on them, so
// killing a container stays in one place.
type prober struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	// ready starts false when there is a readiness probe.
	ready bool
	// dead is set once the liveness probe failed failureThreshold times.
	dead bool
}

type probeSet struct {
	mu sync.Mutex
	m  map[string]*prober // by container id
}

// ensureProbes starts the probes of a running container once.
func (a *Agent) ensureProbes(ctx context.Context, key, id string, c *types.Container, ip string) {
	if c.LivenessProbe == nil && c.ReadinessProbe == nil {
		return
	}
	a.probes.mu.Lock()
	defer a.probes.mu.Unlock()
	if a.probes.m == nil {
		a.probes.m = map[string]*prober{}
	}
	if _, ok := a.probes.m[id]; ok {
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &prober{cancel: cancel, ready: c.ReadinessProbe == nil}
	a.probes.m[id] = p
	name := c.Name
	if c.LivenessProbe != nil {
		go a.runProbe(pctx, key, id, name, ip, "Liveness", c.LivenessProbe, func(ok bool) bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			if ok || p.dead {
				return false
			}
			p.dead = true
			return true
		})
	}
	if c.ReadinessProbe != nil {
		go a.runProbe(pctx, key, id, name, ip, "Readiness", c.ReadinessProbe, func(ok bool) bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			changed := p.ready != ok
			p.ready = ok
			return changed
		})
	}
}

// stopProbes ends the probes of a container that goes away.
func (a *Agent) stopProbes(id string) {
	a.probes.mu.Lock()
	defer a.probes.mu.Unlock()
	if p, ok := a.probes.m[id]; ok {
		p.cancel()
		delete(a.probes.m, id)
	}
}

func (a *Agent) probe(id string) *prober {
	a.probes.mu.Lock()
	defer a.probes.mu.Unlock()
	return a.probes.m[id]
}

// unhealthy tells whether the liveness probe of a container failed.
func (a *Agent) unhealthy(id string) bool {
	p := a.probe(id)
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dead
}

// ready is the readiness of a running container: true without a probe.
func (a *Agent) ready(id string, c *types.Container) bool {
	if c.ReadinessProbe == nil {
		return true
	}
	p := a.probe(id)
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready
}

// runProbe checks every period after the initial delay and reports a
// verdict once the success or failure threshold is reached; verdict says
// whether that changed anything, and then the group is reconciled.
func (a *Agent) runProbe(ctx context.Context, key, id, name, ip, kind string, pr *types.Probe, verdict func(ok bool) bool) {
	if !sleepCtx(ctx, time.Duration(pr.InitialDelaySeconds)*time.Second) {
		return
	}
	period := time.Duration(max(pr.PeriodSeconds, 1)) * time.Second
	successes, failures := int32(0), int32(0)
	for {
		err := a.check(ctx, id, ip, pr)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			successes, failures = successes+1, 0
			if successes >= max(pr.SuccessThreshold, 1) && verdict(true) {
				a.enqueue(key)
			}
		} else {
			successes, failures = 0, failures+1
			a.probeEvent(key, name, fmt.Sprintf("%s probe failed: %v", kind, err))
			if failures >= max(pr.FailureThreshold, 1) && verdict(false) {
				a.enqueue(key)
			}
		}
		if !sleepCtx(ctx, period) {
			return
		}
	}
}

// probeEvent records an Unhealthy event through the next reconcile pass.
func (a *Agent) probeEvent(key, container, msg string) {
	a.mu.Lock()
	a.pendingEvents[key] = append(a.pendingEvents[key], pendingEvent{container: container, name: "Unhealthy", msg: msg, at: a.now().UTC()})
	a.mu.Unlock()
	a.enqueue(key)
}

type pendingEvent struct {
	container, name, msg string
	at                   time.Time
}

// takeEvents moves events recorded outside a reconcile pass into st.
func (a *Agent) takeEvents(key string, st *types.GroupStatus) {
	a.mu.Lock()
	evs := a.pendingEvents[key]
	delete(a.pendingEvents, key)
	a.mu.Unlock()
	for _, e := range evs {
		if cs := st.Container(e.container); cs != nil {
			cs.Events = types.AddEvent(cs.Events, e.at, e.name, e.msg, "Warning")
		}
	}
}

// check runs one probe with its timeout.
func (a *Agent) check(ctx context.Context, id, ip string, pr *types.Probe) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(max(pr.TimeoutSeconds, 1))*time.Second)
	defer cancel()
	if pr.HTTPGet != nil {
		return httpProbe(ctx, ip, pr.HTTPGet)
	}
	var out bytes.Buffer
	code, err := a.opts.Runtime.Exec(ctx, id, runtime.ExecSpec{
		ID:     "probe-" + uuid.NewString()[:8],
		Args:   pr.Exec,
		Stdin:  strings.NewReader(""),
		Output: &out,
	})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("command exited with %d: %s", code, strings.TrimSpace(out.String()))
	}
	return nil
}

// httpProbe GETs the container's own address; 2xx and 3xx are healthy, as
// in Kubernetes.
func httpProbe(ctx context.Context, ip string, h *types.HTTPGet) error {
	u := h.Scheme + "://" + net.JoinHostPort(ip, strconv.Itoa(int(h.Port))) + "/" + strings.TrimPrefix(h.Path, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	for _, hd := range h.Headers {
		req.Header.Set(hd.Name, hd.Value)
	}
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe returned %d", resp.StatusCode)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
