package cluster

import (
	"fmt"
	"github.com/berth-dev/berth/internal/testenv"
	"runtime"
	"slices"
	"strings"
	"time"
)

// summary is a distribution by the nearest-rank method, as ../ reports it.
type summary struct {
	N                int
	Median, P99, Max time.Duration
}

func summarize(samples []time.Duration) summary {
	if len(samples) == 0 {
		return summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := func(p int) time.Duration {
		i := (p*len(s)+99)/100 - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return summary{N: len(s), Median: rank(50), P99: rank(99), Max: s[len(s)-1]}
}

// report is the Cluster section's generated part.
type report struct {
	m       mode
	started time.Time
	place   []placeResult
	steps   []stepResult
}

// The generated part of docs/benchmarks.md's Cluster section lies
// between these; the rest of the file is not touched.
const (
	beginMarker = "<!-- BEGIN GENERATED: make bench (cluster) -->"
	endMarker   = "<!-- END GENERATED: make bench (cluster) -->"
)

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run of %s UTC, mode %s, commit %s; %d CPUs (%s), %s.\n\n",
		r.started.UTC().Format("2006-01-02 15:04"), r.m.name, testenv.SourceCommit(), runtime.NumCPU(), testenv.CPUModel(), runtime.Version())

	fmt.Fprintf(&b, "### C1. Scheduler: %d groups placed one by one on %d nodes (in memory)\n\n", r.m.placeGroups, r.m.placeNodes)
	b.WriteString("| policy | placements/s | median | p99 | max | nodes used | p99 ÷ first fit's p99 |\n|---|---:|---:|---:|---:|---:|---:|\n")
	var ref summary
	for _, p := range r.place {
		cmp := "—"
		if ref.N == 0 {
			ref = p.lat
		} else {
			cmp = fmt.Sprintf("%.1f×", float64(p.lat.P99)/float64(max(1, ref.P99)))
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %d | %s |\n", p.policy, p.perSecond, us(p.lat.Median), us(p.lat.P99), us(p.lat.Max), p.nodesUsed, cmp)
	}

	fmt.Fprintf(&b, "\n### C2. Control plane with simulated agents, %d groups per node\n\n", r.m.groupsPerNode)
	b.WriteString("Idle: leases only, before any group. Create: first PUT to last group Running. " +
		"Server CPU is the server process (etcd, store, informers, controllers, API, TLS) in cores; the agents run in another process.\n\n")
	b.WriteString("| nodes | agents watch | groups | all Ready after | idle: server CPU | idle: etcd writes/s | idle: renew p50 / p99 | create: server CPU | create: etcd writes/s | create: renew p50 / p99 / max | PUT answer p50 / p99 | PUT → Running p50 / p99 | groups Running/s | agents' CPU (idle / create) | problems |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, s := range r.steps {
		watch := "all endpoints and nodes"
		if !s.watchAll {
			watch = "own groups only"
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %s | %.2f | %.0f | %s / %s | %.2f | %.0f | %s / %s / %s | %s / %s | %s / %s | %.0f | %.2f / %.2f | %s |\n",
			s.nodes, watch, s.groups, secs(s.join), s.idle.serverCores, s.idle.writesPerSec, ms(s.renewIdle.Median), ms(s.renewIdle.P99),
			s.create.serverCores, s.create.writesPerSec, ms(s.renewCreate.Median), ms(s.renewCreate.P99), ms(s.renewCreate.Max),
			ms(s.put.Median), ms(s.put.P99), ms(s.toRunning.Median), ms(s.toRunning.P99),
			float64(s.running)/s.createTime.Seconds(), s.idle.agentCPU, s.create.agentCPU, s.problems())
	}
	return b.String()
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }
func ms(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f ms", float64(d)/1e6)
}
func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
