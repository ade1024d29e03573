#!/usr/bin/env bash
# setup.sh installs what Berth needs on a Debian machine, as root.
# It is idempotent: packages already present are left alone, so make run
# and make test can call it every time.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "setup.sh: must run as root" >&2
	exit 1
fi

packages=(
	containerd
	runc
	containernetworking-plugins
	iptables
	nftables
	docker-registry
	busybox-static
	git
	iproute2
	ca-certificates
	curl
	# make bench (and its smoke run in make test) compares with podman;
	# catatonit is the init of podman's pod infra container.
	podman
	catatonit
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# policy-rc.d may forbid starting services inside containers; Berth and its
	# tests start their own daemons, so a refused service start is harmless.
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The group network needs forwarding for NAT and bridge traffic to pass
# iptables so per-port rules apply.
sysctl -q -w net.ipv4.ip_forward=1
modprobe br_netfilter 2>/dev/null || true
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
	sysctl -q -w net.bridge.bridge-nf-call-iptables=1
fi

if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "setup.sh: Go is required (1.24 or newer)" >&2
	exit 1
fi

# gVisor for `berth server --isolation sandboxed`. Debian's runsc (2022-12)
# cannot use --network=sandbox on current kernels (google/gvisor#10704), so
# a pinned runsc is built from its Go module into BERTH_LIB (~75 s, once);
# a stamp file records the version built. Berth's containerd shim for it is
# built from this repository by `make build` (bin/containerd-shim-runsc-v1).
BERTH_LIB=${BERTH_LIB:-/usr/local/lib/berth}
RUNSC_VERSION=v0.0.0-20260905035102-160fafc42237
runsc_stamp="$BERTH_LIB/runsc.version"
if [ ! -x "$BERTH_LIB/runsc" ] || [ "$(cat "$runsc_stamp" 2>/dev/null)" != "$RUNSC_VERSION" ]; then
	echo "setup.sh: building runsc $RUNSC_VERSION into $BERTH_LIB (takes a minute or two)"
	gobin=$(mktemp -d)
	trap 'rm -rf "$gobin"' EXIT
	PATH="$PATH:/usr/local/go/bin" GOBIN="$gobin" CGO_ENABLED=0 \
		go install "gvisor.dev/gvisor/runsc@$RUNSC_VERSION"
	install -d -m 0755 "$BERTH_LIB"
	install -m 0755 "$gobin/runsc" "$BERTH_LIB/runsc.new"
	mv -f "$BERTH_LIB/runsc.new" "$BERTH_LIB/runsc"
	echo "$RUNSC_VERSION" >"$runsc_stamp"
fi
