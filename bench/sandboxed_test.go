package bench

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berth-dev/berth/internal/testenv"
)

// sandboxed is (1) and (5) under `berth server --isolation sandboxed`
// (one gVisor sandbox per group). It runs a second server on a containerd
// of its own: two servers on one containerd namespace would collect each
// other's containers.
func (h *harness) sandboxed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ctd := testenv.StartContainerd(t)
	srv := testenv.StartServer(t, testenv.ServerOptions{
		Containerd:         ctd,
		InsecureRegistries: []string{h.reg.Addr},
		LogLevel:           "info",
		Isolation:          "sandboxed",
	})
	hc := srv.HTTPClient()
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 256
	api := &berthAPI{hc: hc, endpoint: srv.Client.Endpoint, token: srv.Client.Token, sub: uuid.NewString(), rg: "sandboxed"}
	if err := api.createResourceGroup(ctx); err != nil {
		t.Fatal(err)
	}
	nd := &node{api: api, ctd: ctd, cl: ctd.Client(t), serverPid: serverPid(t, srv), ctdPid: containerdPid(t, ctd)}

	// Warm-up: pulls the image into this containerd.
	if _, err := h.berthRunOn(ctx, api, helloGroup(h.hello), helloProbe); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	var starts []time.Duration
	var split []phases
	failures := 0
	for i := 0; i < h.m.sandboxRuns; i++ {
		r, err := h.berthRunOn(ctx, api, helloGroup(h.hello), helloProbe)
		if err != nil {
			if err := tolerate(t, err, &failures); err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
			continue
		}
		starts = append(starts, r.running)
		ph, err := phasesOf(r)
		if err != nil {
			t.Fatal(err)
		}
		split = append(split, ph)
	}
	if len(starts) == 0 {
		t.Fatalf("no sandboxed group ran (%d failed)", failures)
	}
	h.rep.distTable("1b. Create → running, one container, sandboxed isolation (gVisor)", failures,
		"As step 1, on a second berth server with `--isolation sandboxed` (runsc, systrap platform) and a containerd of its own; the runc rows are step 1's, from earlier in the same run.",
		[]distRow{
			{"Berth sandboxed (PUT → answers on group IP)", summarize(starts), true},
			{"Berth runc (step 1)", h.step1["berth"], false},
			{"ctr run -d, runc (step 1)", h.step1["ctr"], false},
			{"podman run -d, runc (step 1)", h.step1["podman"], false},
		})
	h.rep.phaseTable("Where the sandboxed start's time goes", split)

	row := h.density(ctx, t, nd, h.m.sandboxDensity)
	h.rep.densityTable("5b. Density: idle one-container groups (sandboxed, gVisor)",
		"workload PSS as containerd sees it (the task's process is runsc's sandbox: the Sentry with hello's memory)",
		"shims and the other runsc processes (gofer) PSS", row)
}
