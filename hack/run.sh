#!/usr/bin/env bash
# run.sh brings up a single-node Berth on this machine and deploys a
# hello-world container group, then prints how to reach it and the API.
#   hack/run.sh        start (idempotent) and deploy the example
#   hack/run.sh stop   stop berth server, the registry and containerd it started
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${BERTH_DATA_DIR:-/var/lib/berth}
STATE=${BERTH_RUN_DIR:-/run/berth-dev}
LOGS=${BERTH_LOG_DIR:-/var/log/berth}
REGISTRY=127.0.0.1:5000
CONTAINERD_SOCK=/run/containerd/containerd.sock
mkdir -p "$STATE" "$LOGS"

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

stop_one() {
	if running "$1"; then
		kill "$(cat "$STATE/$1.pid")" || true
		for _ in $(seq 50); do running "$1" || break; sleep 0.2; done
	fi
	rm -f "$STATE/$1.pid"
}

if [ "${1:-}" = "stop" ]; then
	stop_one berth
	stop_one registry
	stop_one containerd
	echo "stopped"
	exit 0
fi

# containerd: use a running one, else start Debian's with its default config.
if ! ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
	echo "starting containerd (log: $LOGS/containerd.log)"
	setsid containerd >"$LOGS/containerd.log" 2>&1 </dev/null &
	echo $! >"$STATE/containerd.pid"
	for _ in $(seq 100); do ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
fi

# A local registry for the example image: nothing else is reachable here.
if ! curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
	echo "starting a local registry on $REGISTRY (log: $LOGS/registry.log)"
	mkdir -p /var/lib/berth-registry
	cat >"$STATE/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: /var/lib/berth-registry}
  delete: {enabled: true}
http:
  addr: $REGISTRY
YML
	setsid docker-registry serve "$STATE/registry.yml" >"$LOGS/registry.log" 2>&1 </dev/null &
	echo $! >"$STATE/registry.pid"
	for _ in $(seq 100); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
fi
go run ./hack/pushimage --registry "$REGISTRY" --image hello

if ! running berth; then
	echo "starting berth server (data: $DATA_DIR, log: $LOGS/berth.log)"
	rm -f "$DATA_DIR/client.json"
	setsid bin/berth server --data-dir "$DATA_DIR" --insecure-registry "$REGISTRY" \
		--containerd-address "$CONTAINERD_SOCK" >"$LOGS/berth.log" 2>&1 </dev/null &
	echo $! >"$STATE/berth.pid"
fi
for _ in $(seq 600); do [ -s "$DATA_DIR/client.json" ] && break; sleep 0.1; done
if [ ! -s "$DATA_DIR/client.json" ]; then
	echo "berth server did not come up; see $LOGS/berth.log" >&2
	tail -20 "$LOGS/berth.log" >&2
	exit 1
fi

ENDPOINT=$(sed -n 's/.*"endpoint": *"\([^"]*\)".*/\1/p' "$DATA_DIR/client.json")
CA=$(sed -n 's/.*"caFile": *"\([^"]*\)".*/\1/p' "$DATA_DIR/client.json")
TOKEN=$(sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' "$DATA_DIR/client.json")
SUB=00000000-0000-0000-0000-000000000000
CG="$ENDPOINT/subscriptions/$SUB/resourceGroups/demo/providers/Microsoft.ContainerInstance/containerGroups/hello"
api() { curl -fsS --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }

api -X PUT "$ENDPOINT/subscriptions/$SUB/resourcegroups/demo?api-version=2021-04-01" -d '{"location":"westus"}' >/dev/null
api -X PUT "$CG?api-version=2023-05-01" -d @- >/dev/null <<JSON
{"location": "westus", "properties": {"osType": "Linux", "restartPolicy": "Always",
 "containers": [{"name": "hello", "properties": {"image": "$REGISTRY/berth/hello:1",
   "ports": [{"port": 80}], "resources": {"requests": {"cpu": 0.5, "memoryInGB": 0.25}}}}],
 "ipAddress": {"type": "Public", "ports": [{"port": 80, "protocol": "TCP"}]}}}
JSON

state=""
for _ in $(seq 120); do
	body=$(api "$CG?api-version=2023-05-01")
	state=$(echo "$body" | sed -n 's/.*"provisioningState":"\([A-Za-z]*\)".*/\1/p')
	[ "$state" = Succeeded ] || [ "$state" = Failed ] && break
	sleep 0.5
done
if [ "$state" != Succeeded ]; then
	echo "the hello group did not start (provisioningState $state): $body" >&2
	exit 1
fi
IP=$(echo "$body" | sed -n 's/.*"ip":"\([0-9.]*\)".*/\1/p')

cat <<MSG

Berth is running.
  API:          $ENDPOINT   (client config: $DATA_DIR/client.json)
  hello group:  IP $IP
  its page:     $(curl -fsS --max-time 5 "http://$IP/" | head -1)

Call the API (ARM, api-version 2023-05-01), for example:
  curl --cacert $CA -H "Authorization: Bearer \$(cat $DATA_DIR/pki/admin.token)" \\
    "$CG?api-version=2023-05-01"
  curl --cacert $CA -H "Authorization: Bearer ..." \\
    "$CG/containers/hello/logs?api-version=2023-05-01"
Delete the example:  curl ... -X DELETE "$CG?api-version=2023-05-01"
Stop everything:     make stop
MSG
