// Package cluster benchmarks Berth's control plane at cluster scale
// without machines: the scheduler's Place over 1,000 simulated nodes, and
// one real server stack (embedded etcd, store, informers, scheduler, node
// and lifecycle controllers, the API with the node protocol over mTLS) in
// front of many simulated agents that run in a child process, so that the
// server's CPU is measured apart from theirs.
//
// Like ../ (the single-node suite) it is a Go test that runs only with
// BERTH_BENCH=smoke or BERTH_BENCH=full: `make bench` refreshes the
// Cluster section of docs/benchmarks.md, `make bench-smoke` checks that
// every group of a small cluster reaches Running.
package cluster
