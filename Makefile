# Berth. `make run` brings up a single-node service with a working example;
# `make test` runs every test, end-to-end ones included (as root).
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/berth-dev/berth/internal/version.Version=$(VERSION) -X github.com/berth-dev/berth/internal/version.Commit=$(COMMIT)

.PHONY: all build setup run stop test test-unit vet clean bench bench-smoke

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/berth ./cmd/berth
# Berth's gVisor shim, a module of its own (shim/runsc); static, since
# sandboxes also run it as their pause process.
	cd shim/runsc && CGO_ENABLED=0 $(GO) build -trimpath -o ../../bin/containerd-shim-runsc-v1 .

# Installs the system packages Berth needs (apt-get; idempotent).
setup:
	./hack/setup.sh

# Brings up containerd, a local registry and `berth server`, then deploys
# a hello-world container group and prints how to reach it.
run: setup build
	./hack/run.sh

# Stops what `make run` started (running groups keep running in containerd).
stop:
	./hack/run.sh stop

# Every test: unit, integration and end-to-end on real containerd, CNI,
# etcd and a registry. BERTH_E2E=1 makes a missing prerequisite a failure.
# The end-to-end suite runs under both isolation levels: the default,
# sandboxed (gVisor), with everything else, then again under runc.
test: setup
	$(GO) vet ./...
	BERTH_E2E=1 $(GO) test -count=1 -timeout 60m ./...
	BERTH_E2E=1 BERTH_E2E_ISOLATION=runc $(GO) test -count=1 -timeout 30m ./test/e2e/
	cd shim/runsc && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(GO) test -run='^$$' -fuzz=FuzzPutGroupBody -fuzztime=15s ./internal/apiserver/
	$(MAKE) --no-print-directory bench-smoke

# Benchmarks of Berth next to ctr and podman on this machine, in one run
# (docs/benchmarks.md), then the control plane at cluster size with simulated
# agents (bench/cluster). bench refreshes the doc's tables (about 20 minutes);
# bench-smoke runs every step a few times and checks only that each works.
bench: setup
	BERTH_BENCH=full $(GO) test -count=1 -run '^TestBench$$' -timeout 45m -v ./bench/
	BERTH_BENCH=full $(GO) test -count=1 -run '^TestCluster$$' -timeout 45m -v ./bench/cluster/

bench-smoke: setup
	BERTH_BENCH=smoke $(GO) test -count=1 -run '^TestBench$$' -timeout 10m -v ./bench/
	BERTH_BENCH=smoke $(GO) test -count=1 -run '^TestCluster$$' -timeout 5m -v ./bench/cluster/

# Only the tests that need neither root nor daemons.
test-unit:
	$(GO) test -count=1 ./internal/apiserver/ ./internal/config/ ./internal/pki/ ./internal/store/ ./client/ ./internal/cli/ ./internal/imagebuild/ ./internal/dns/ ./internal/daemon/ ./internal/agent/firewall/

clean:
	rm -rf bin
