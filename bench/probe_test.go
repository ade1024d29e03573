package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// probeSpec is one port the workload must answer on, and what the body
// must contain.
type probeSpec struct {
	port int
	want string
}

// helloProbe and pairProbes are what "running" means for the hello group
// and the two-container group.
var (
	helloProbe = []probeSpec{{port: 80, want: "Hello from Berth"}}
	pairProbes = []probeSpec{{port: 80, want: "Hello from Berth"}, {port: 8080, want: "shared-ok"}}
)

// probeEvery is how often a port is tried: small against the latencies
// measured (hundreds of milliseconds), cheap for the machine.
const probeEvery = 5 * time.Millisecond

// probeClient connects without keep-alive (every probe is a fresh
// connection, as the first client of a new workload would make) and gives
// up fast on an address that does not answer yet.
var probeClient = &http.Client{
	Timeout: time.Second,
	Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{Timeout: 300 * time.Millisecond}).DialContext,
	},
}

// waitAnswers returns once every probe has answered 200 with its body, or
// with ctx's error and the last failure.
func waitAnswers(ctx context.Context, host string, probes []probeSpec) error {
	for _, p := range probes {
		if err := waitAnswer(ctx, host, p); err != nil {
			return err
		}
	}
	return nil
}

func waitAnswer(ctx context.Context, host string, p probeSpec) error {
	url := fmt.Sprintf("http://%s/", net.JoinHostPort(host, fmt.Sprint(p.port)))
	var last error
	for {
		last = getOnce(ctx, url, p.want)
		if last == nil {
			return nil
		}
		if err := sleepCtx(ctx, probeEvery); err != nil {
			return fmt.Errorf("%s did not answer: %w (last: %v)", url, err, last)
		}
	}
}

func getOnce(ctx context.Context, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("got %s: %q", resp.Status, body)
	}
	return nil
}
