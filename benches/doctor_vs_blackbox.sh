#!/usr/bin/env bash
# Benchmark: Doctor Monkey sweeping 10,000 HTTP health endpoints on loopback (20 addresses 127.0.1.1-20 ×
# 500 ports), side by side with Prometheus' blackbox exporter (Debian package) probing the same endpoints
# through its /probe API (README.md, "Doctor Monkey sweep vs blackbox exporter"). Usage, from anywhere:
#
#   benches/doctor_vs_blackbox.sh               # RUNS=2 by default
#   SIMIAN_BIN=/path/to/simian benches/doctor_vs_blackbox.sh   # use that binary, skip cargo build
#   N_ADDRS=20 N_PORTS=500 PORT_BASE=30000 CONCURRENCY=256 KEEP=1 ...
#
# One asyncio process (benches/doctor_bench.py serve) listens on every endpoint and answers `200 ok`.
# simian: a dry-run policy with one hosts target of 10,000 hosts, each with its own `url:`; doctor with
#   expect_status [200], timeout 2s, concurrency 256, a fresh store; `simian run --monkey doctor --format json`
#   under /usr/bin/time -v; summary.doctor.healthy must be 10,000.
# blackbox: prometheus-blackbox-exporter started fresh per run on 127.0.0.1:<free port> with an http_2xx module
#   (timeout 2s, ip4, valid_status_codes [200]); a Python asyncio driver keeps 256 keep-alive connections to it
#   and sends one /probe?target=URL&module=http_2xx per endpoint; probe_success 1 must be 10,000. The
#   exporter's peak RSS is /proc/PID/status VmHWM; its CPU is utime+stime from /proc/PID/stat.
# Also recorded for both: CPU the endpoint server spent meanwhile (the same work for both tools).
# Installs what it needs: /usr/bin/time (package `time`), prometheus-blackbox-exporter (apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

RUNS=${RUNS:-2}
N_ADDRS=${N_ADDRS:-20}
N_PORTS=${N_PORTS:-500}
PORT_BASE=${PORT_BASE:-30000}
CONCURRENCY=${CONCURRENCY:-256}
helper=$root/benches/doctor_bench.py
log() { printf '[bench] %s\n' "$*" >&2; }

# --- installs -----------------------------------------------------------------------------------------
need_apt=()
[ -x /usr/bin/time ] || need_apt+=(time)
command -v prometheus-blackbox-exporter >/dev/null || need_apt+=(prometheus-blackbox-exporter)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if [ -n "${SIMIAN_BIN:-}" ]; then
  simian=$SIMIAN_BIN
else
  log "building simian (cargo build --release)"
  cargo build --release -q --locked
  simian=$root/target/release/simian
fi
[ -x "$simian" ] || { echo "no simian binary at $simian" >&2; exit 1; }

# 10,000 listening sockets plus connections in flight.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((N_ADDRS * N_PORTS + 2 * CONCURRENCY + 256)) ] ||
  { echo "open-file limit $(ulimit -n) too low for $((N_ADDRS * N_PORTS)) listeners" >&2; exit 1; }

work=$(mktemp -d /tmp/simian-doctor-bench.XXXXXX)
server_pid='' exporter_pid=''
cleanup() {
  [ -n "$exporter_pid" ] && kill "$exporter_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks
hz=$(getconf CLK_TCK)
tv() { sed -n "s/^[[:space:]]*$2: //p" "$1"; }     # a field of /usr/bin/time -v output
secs() { # "m:ss.ss" or "h:mm:ss" -> seconds
  awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }' <<<"$1"
}

# --- endpoints ----------------------------------------------------------------------------------------
n=$((N_ADDRS * N_PORTS))
python3 "$helper" targets "$work/targets.txt" "$N_ADDRS" "$PORT_BASE" "$N_PORTS"
log "starting $n endpoints: 127.0.1.1-$N_ADDRS × ports $PORT_BASE-$((PORT_BASE + N_PORTS - 1))"
python3 "$helper" serve "$work/targets.txt" "$work/ready" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do [ -s "$work/ready" ] && break; kill -0 "$server_pid" || break; sleep 0.1; done
[ -s "$work/ready" ] || { cat "$work/server.log" >&2; echo "endpoint server did not start" >&2; exit 1; }
curl -fsS "$(head -1 "$work/targets.txt")" >/dev/null && curl -fsS "$(tail -1 "$work/targets.txt")" >/dev/null

# --- blackbox config ----------------------------------------------------------------------------------
cat >"$work/blackbox.yml" <<'EOF'
modules:
  http_2xx:
    prober: http
    timeout: 2s
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
EOF

results=$work/results.tsv
: >"$results"

run_simian() {
  local r=$1 store=$work/simian-$r.db
  rm -f "$store"*
  python3 "$helper" policy "$work/targets.txt" "$store" "$CONCURRENCY" >"$work/policy.yaml"
  local s0; s0=$(cpu_ticks "$server_pid")
  /usr/bin/time -v -o "$work/simian-$r.time" "$simian" run --policy "$work/policy.yaml" --monkey doctor \
    --format json >"$work/simian-$r.json" 2>"$work/simian-$r.err" || true
  local s1; s1=$(cpu_ticks "$server_pid")
  local healthy wall rss cpu
  healthy=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["doctor"]["healthy"])' \
    "$work/simian-$r.json" 2>/dev/null || echo "?")
  wall=$(secs "$(tv "$work/simian-$r.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)')")
  rss=$(tv "$work/simian-$r.time" 'Maximum resident set size (kbytes)')
  cpu=$(awk -v u="$(tv "$work/simian-$r.time" 'User time (seconds)')" \
            -v s="$(tv "$work/simian-$r.time" 'System time (seconds)')" 'BEGIN { print u + s }')
  [ "$healthy" = "$n" ] || { log "simian run $r: healthy=$healthy, expected $n (see $work/simian-$r.err)"; KEEP=1; }
  printf 'simian\t%s\t%s\t%s\t%s\t%s\t%s\t-\n' "$r" "$wall" "$rss" "$cpu" \
    "$(awk -v a="$s0" -v b="$s1" -v hz="$hz" 'BEGIN { print (b - a) / hz }')" "$healthy" >>"$results"
}

run_blackbox() {
  local r=$1 port; port=$(free_port)
  prometheus-blackbox-exporter --config.file="$work/blackbox.yml" --web.listen-address="127.0.0.1:$port" \
    --log.level=warn >"$work/blackbox-$r.log" 2>&1 &
  exporter_pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/-/healthy" >/dev/null 2>&1 && break; sleep 0.1; done
  local e0 s0; e0=$(cpu_ticks "$exporter_pid"); s0=$(cpu_ticks "$server_pid")
  /usr/bin/time -v -o "$work/driver-$r.time" python3 "$helper" drive "$work/targets.txt" "127.0.0.1:$port" \
    "$CONCURRENCY" >"$work/driver-$r.json"
  local e1 s1; e1=$(cpu_ticks "$exporter_pid"); s1=$(cpu_ticks "$server_pid")
  local hwm; hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$exporter_pid/status")
  kill "$exporter_pid"; wait "$exporter_pid" 2>/dev/null || true; exporter_pid=''
  local ok wall dcpu drss
  ok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$work/driver-$r.json")
  wall=$(secs "$(tv "$work/driver-$r.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)')")
  drss=$(tv "$work/driver-$r.time" 'Maximum resident set size (kbytes)')
  dcpu=$(awk -v u="$(tv "$work/driver-$r.time" 'User time (seconds)')" \
             -v s="$(tv "$work/driver-$r.time" 'System time (seconds)')" 'BEGIN { print u + s }')
  [ "$ok" = "$n" ] || { log "blackbox run $r: probe_success=$ok, expected $n: $(cat "$work/driver-$r.json")"; KEEP=1; }
  printf 'blackbox\t%s\t%s\t%s\t%s\t%s\t%s\t%s/%s\n' "$r" "$wall" "$hwm" \
    "$(awk -v a="$e0" -v b="$e1" -v hz="$hz" 'BEGIN { print (b - a) / hz }')" \
    "$(awk -v a="$s0" -v b="$s1" -v hz="$hz" 'BEGIN { print (b - a) / hz }')" "$ok" "$dcpu" "$drss" >>"$results"
}

for r in $(seq "$RUNS"); do
  # Alternate the order so neither tool always runs on a warmer (or more TIME_WAIT-laden) loopback.
  if [ $((r % 2)) -eq 1 ]; then
    log "run $r/$RUNS: simian"; run_simian "$r"; sleep 2
    log "run $r/$RUNS: blackbox exporter"; run_blackbox "$r"
  else
    log "run $r/$RUNS: blackbox exporter"; run_blackbox "$r"; sleep 2
    log "run $r/$RUNS: simian"; run_simian "$r"
  fi
  sleep 2
done

# --- table ----------------------------------------------------------------------------------------------
echo
echo "$n endpoints, concurrency $CONCURRENCY, timeout 2s, $(nproc) cores; simian $("$simian" --version 2>/dev/null || echo '?')"
echo
printf '| tool | run | wall s | probes/s | peak RSS MiB | tool CPU s | endpoint-server CPU s | healthy | driver CPU s / RSS MiB |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
sort -s -k1,1r "$results" | while IFS=$'\t' read -r tool r wall rss cpu scpu ok drv; do
  if [ "$drv" != - ]; then
    drv=$(awk -v d="$drv" 'BEGIN { split(d, a, "/"); printf "%.2f / %.0f", a[1], a[2] / 1024 }')
  fi
  label=$tool; [ "$tool" = blackbox ] && label="blackbox exporter (+ driver)"
  awk -v t="$label" -v r="$r" -v w="$wall" -v n="$n" -v rss="$rss" -v c="$cpu" -v sc="$scpu" -v ok="$ok" -v d="$drv" \
    'BEGIN { printf "| %s | %s | %.2f | %.0f | %.1f | %.2f | %.2f | %s | %s |\n", t, r, w, n / w, rss / 1024, c, sc, ok, d }'
done
