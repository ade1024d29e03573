// Package bench holds Berth's benchmark suite: start latency, throughput,
// density and API load of `berth server`, measured in one run on one
// machine next to `ctr run` (containerd's own CLI, on the same private
// containerd) and `podman run`.
//
// The harness is a Go test, so that it reuses internal/testenv's private
// containerd, registry and server: `make bench` runs it in full mode and
// refreshes docs/benchmarks.md, `make bench-smoke` runs every step a few
// times and checks only that each one worked. Without BERTH_BENCH set, the
// test skips.
package bench
