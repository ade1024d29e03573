package bench

import (
	"fmt"
	"github.com/berth-dev/berth/internal/testenv"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// report collects the tables of one run in markdown.
type report struct {
	header  []string
	parts   []string
	profile string
}

func newReport(m mode, h *harness) *report {
	r := &report{}
	r.header = append(r.header,
		fmt.Sprintf("Run of %s UTC, mode %s, commit %s.", time.Now().UTC().Format("2006-01-02 15:04"), m.name, testenv.SourceCommit()),
		fmt.Sprintf("Machine: %s, %d CPUs, %s RAM, kernel %s, cgroup %s.", testenv.CPUModel(), runtime.NumCPU(), memTotal(), firstLine("uname", "-r"), cgroupVersion()),
		fmt.Sprintf("Software: %s; %s; %s; %s.", firstLine("containerd", "--version"), firstLine("runc", "--version"), firstLine("podman", "--version"), runtime.Version()),
	)
	return r
}

// distRow is one line of a distribution table; reference marks the row
// the others are compared with.
type distRow struct {
	system    string
	s         summary
	reference bool
}

func (r *report) distTable(title string, failures int, note string, rows []distRow) {
	var ref summary
	for _, row := range rows {
		if row.reference {
			ref = row.s
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n%s\n\n", title, note)
	if failures > 0 {
		fmt.Fprintf(&b, "**%d Berth group(s) failed to deploy** and are not in the figures (the harness log has the errors).\n\n", failures)
	}
	b.WriteString("| system | runs | median | p90 | p99 | Berth median ÷ this median |\n|---|---:|---:|---:|---:|---:|\n")
	for _, row := range rows {
		cmp := "—"
		if !row.reference {
			cmp = ratio(ref.Median, row.s.Median)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s |\n", row.system, row.s.N, ms(row.s.Median), ms(row.s.P90), ms(row.s.P99), cmp)
	}
	r.parts = append(r.parts, b.String())
}

// phaseTable shows where the time of Berth's starts in step 1 goes.
func (r *report) phaseTable(title string, split []phases) {
	col := func(f func(phases) time.Duration) summary {
		var d []time.Duration
		for _, p := range split {
			d = append(d, f(p))
		}
		return summarize(d)
	}
	rows := []struct {
		what string
		s    summary
	}{
		{"request → Pulling event: API (validation, 2 etcd writes), watch, queue, network namespace + CNI, group files", col(func(p phases) time.Duration { return p.toPulling })},
		{"Pulling → Pulled: image resolve (cached)", col(func(p phases) time.Duration { return p.pull })},
		{"Pulled → Created: containerd container, snapshot, OCI spec, task create (shim start, runtime create)", col(func(p phases) time.Duration { return p.create })},
		{"Created → Started: task start", col(func(p phases) time.Duration { return p.start })},
		{"Started → first answer: hello's own start, probe interval", col(func(p phases) time.Duration { return p.toAnswer })},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s, from the agent's event timestamps:\n\n", title)
	b.WriteString("| phase | median | p90 |\n|---|---:|---:|\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", row.what, ms(row.s.Median), ms(row.s.P90))
	}
	r.parts = append(r.parts, b.String())
}

type throughputRow struct {
	system string
	n      int
	total  time.Duration
	per    summary
	del    time.Duration
	failed int
}

func (r *report) throughputTable(rows []throughputRow) {
	var b strings.Builder
	fmt.Fprintf(&b, "### 4. Throughput: %d started at once\n\n", rows[0].n)
	b.WriteString("All requests (or commands) are sent in parallel; \"all running\" is when the last workload answered.\n\n")
	b.WriteString("| system | workloads | failed | all running after | per second | each: median | each: p99 | delete all |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %.1f | %s | %s | %s |\n", row.system, row.n, row.failed, ms(row.total),
			float64(row.n-row.failed)/row.total.Seconds(), ms(row.per.Median), ms(row.per.P99), ms(row.del))
	}
	r.parts = append(r.parts, b.String())
}

type densityRow struct {
	groups, target int
	failed         int
	startAll       time.Duration
	hostDelta      int64 // host memory used, after − before
	workload       int64 // PSS of the workload processes
	shims          int64 // PSS of the groups' shims
	nShims         int
	server, ctd    int64 // PSS growth of berth server and containerd
	del            time.Duration
	stopErr        error
	get, list      loadResult
}

// densityTable reports a density run; runtimeLabel names the processes
// counted as the runtime's own.
func (r *report) densityTable(title, workloadLabel, runtimeLabel string, d densityRow) {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", title)
	if d.stopErr != nil {
		fmt.Fprintf(&b, "**Stopped at %d of %d groups:** %v\n\n", d.groups, d.target, d.stopErr)
	}
	if d.failed > 0 {
		fmt.Fprintf(&b, "**%d group(s) failed to deploy** and were replaced (the harness log has the errors).\n\n", d.failed)
	}
	n := float64(max(d.groups, 1))
	fmt.Fprintf(&b, "%d groups running (started in batches of 25 in %s, deleted all at once in %s; %d shim processes).\n\n",
		d.groups, ms(d.startAll), ms(d.del), d.nShims)
	b.WriteString("| per group | memory |\n|---|---:|\n")
	fmt.Fprintf(&b, "| host memory used (MemTotal − MemAvailable), increase | %s |\n", mib(float64(d.hostDelta)/n))
	fmt.Fprintf(&b, "| %s | %s |\n", workloadLabel, mib(float64(d.workload)/n))
	fmt.Fprintf(&b, "| **overhead: host increase − workload** | **%s** |\n", mib(float64(d.hostDelta-d.workload)/n))
	fmt.Fprintf(&b, "| of which %s | %s |\n", runtimeLabel, mib(float64(d.shims)/n))
	fmt.Fprintf(&b, "| of which berth server PSS growth | %s |\n", mib(float64(d.server)/n))
	fmt.Fprintf(&b, "| of which containerd PSS growth | %s |\n", mib(float64(d.ctd)/n))
	fmt.Fprintf(&b, "\nThe API of the real server meanwhile (same concurrency as in 6):\n\n")
	b.WriteString(loadHeader)
	b.WriteString(loadLine(fmt.Sprintf("GET one running group (%d in the resource group)", d.groups), d.get))
	b.WriteString(loadLine(fmt.Sprintf("list %d running groups", d.groups), d.list))
	r.parts = append(r.parts, b.String())
}

const loadHeader = "| request | requests | requests/s | median | p99 | errors |\n|---|---:|---:|---:|---:|---:|\n"

func loadLine(what string, l loadResult) string {
	return fmt.Sprintf("| %s | %d | %.0f | %s | %s | %d |\n", what, l.n, l.rate(), ms(l.lat.Median), ms(l.lat.P99), l.errs)
}

func (r *report) apiTable(m mode, seed time.Duration, get, list loadResult) {
	var b strings.Builder
	fmt.Fprintf(&b, "### 6. API load (closed loop, concurrency %d, %s each)\n\n", m.apiConcurrency, m.apiDuration)
	fmt.Fprintf(&b, "The API handler and its embedded etcd in one process, without an agent, over TLS and HTTP/2; %d groups created first (%s, %.0f PUTs/s at concurrency 16).\n\n",
		m.apiGroups, ms(seed), float64(m.apiGroups)/seed.Seconds())
	b.WriteString(loadHeader)
	b.WriteString(loadLine("GET one group", get))
	b.WriteString(loadLine(fmt.Sprintf("list %d groups", m.apiGroups), list))
	r.parts = append(r.parts, b.String())
}

func (r *report) markdown() string {
	var b strings.Builder
	for _, l := range r.header {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
	for _, p := range r.parts {
		b.WriteString(p + "\n")
	}
	if r.profile != "" {
		b.WriteString("### 7. CPU profile of berth server during step 1\n\n```\n" + strings.TrimSpace(r.profile) + "\n```\n")
	}
	return b.String()
}

// Markers of the generated part of docs/benchmarks.md.
const (
	beginMarker = "<!-- BEGIN GENERATED: make bench -->"
	endMarker   = "<!-- END GENERATED: make bench -->"
)

func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return name + " (unknown version)"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func memTotal() string {
	m, err := meminfo()
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(m["MemTotal"])/(1<<30))
}

func cgroupVersion() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "v2"
	}
	return "v1"
}
