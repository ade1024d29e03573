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
	runsc
	containernetworking-plugins
	iptables
	docker-registry
	busybox-static
	git
	iproute2
	ca-certificates
	curl
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
