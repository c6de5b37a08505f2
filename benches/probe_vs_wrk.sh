#!/usr/bin/env bash
# Benchmark: the steady-state HTTP probe's own overhead (README.md, "Steady-state probe vs wrk"). One loopback
# server (`simian demo-instance`, a tiny HTTP/1.1 server that answers at once or after SERVICE_TIME) is measured
# in one run by `simian probe` (closed loop, CONCURRENCY workers) and by `wrk --latency` with the same number of
# connections and one thread, one after the other, for SECONDS each. Usage, from anywhere:
#
#   benches/probe_vs_wrk.sh                          # zero-delay server and 5 ms server, concurrency 4, 10 s
#   SIMIAN_BIN=/path/to/simian benches/probe_vs_wrk.sh   # use that binary, skip cargo build --release
#   CONCURRENCY=4 SECONDS_EACH=10 MAX_RATE=1000/s ...
#
# simian's probe is capped by `max_rate` (at most 1000/s: a probe measures staging, it must not load-test it),
# wrk is not; so the zero-delay row compares latency at very different loads, and the 5 ms row (both tools held
# by the service time, under the cap) is the like-for-like one. Installs wrk with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY=${CONCURRENCY:-4}
SECONDS_EACH=${SECONDS_EACH:-10}
MAX_RATE=${MAX_RATE:-1000/s}
log() { printf '[bench] %s\n' "$*" >&2; }
command -v wrk >/dev/null || { log "installing wrk with apt-get"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
if [ -n "${SIMIAN_BIN:-}" ]; then
  bin=$SIMIAN_BIN
else
  cargo build --release --quiet
  bin=target/release/simian
fi
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
printf '| server | tool | requests/s | p50 | p99 |\n|---|---|---|---|---|\n'
for service in 0s 5ms; do
  rm -f "$tmp/port"
  "$bin" demo-instance --id bench --address 127.0.0.1 --service-time "$service" >"$tmp/port" &
  server=$!
  for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
  port=$(head -1 "$tmp/port")
  cat >"$tmp/p.yaml" <<YAML
version: 1
store: $tmp/s.db
steady_state:
  probes:
    - name: bench
      http: { url: "http://127.0.0.1:$port/", concurrency: $CONCURRENCY, max_rate: $MAX_RATE, timeout: 2s }
YAML
  "$bin" probe --policy "$tmp/p.yaml" --for "${SECONDS_EACH}s" --format json >"$tmp/simian.json"
  python3 - "$tmp/simian.json" "$service" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["probes"][0]["stats"]
print(f"| {sys.argv[2]} | simian probe | {s['throughput_rps']:.0f} | {s['p50_ms']:.3f} ms | {s['p99_ms']:.3f} ms |")
PY
  wrk -t1 -c"$CONCURRENCY" -d"${SECONDS_EACH}s" --latency "http://127.0.0.1:$port/" >"$tmp/wrk.txt"
  rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$tmp/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$tmp/wrk.txt")
  printf '| %s | wrk --latency | %.0f | %s | %s |\n' "$service" "$rps" "$p50" "$p99"
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
done
