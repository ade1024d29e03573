# Berth. `make run` brings up a single-node service with a working example;
# `make test` runs every test, end-to-end ones included (as root).
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/berth-dev/berth/internal/version.Version=$(VERSION) -X github.com/berth-dev/berth/internal/version.Commit=$(COMMIT)

.PHONY: all build setup run stop test test-unit vet clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/berth ./cmd/berth

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
test: setup
	$(GO) vet ./...
	BERTH_E2E=1 $(GO) test -count=1 -timeout 60m ./...
	$(GO) test -run='^$$' -fuzz=FuzzPutGroupBody -fuzztime=15s ./internal/apiserver/

# Only the tests that need neither root nor daemons.
test-unit:
	$(GO) test -count=1 ./internal/apiserver/ ./internal/config/ ./internal/pki/ ./internal/store/ ./client/ ./internal/cli/ ./internal/imagebuild/

clean:
	rm -rf bin
