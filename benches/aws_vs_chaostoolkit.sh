#!/usr/bin/env bash
# Benchmark: Chaos Monkey over 5,000 EC2 instances in 50 groups on a local moto server, simian vs
# chaostoolkit-aws, side by side (README.md, "Benchmarks"). Usage, from anywhere:
#
#   benches/aws_vs_chaostoolkit.sh            # RUNS=3 by default; RUNS=1 for a quick look
#   SIMIAN_BIN=/path/to/simian benches/aws_vs_chaostoolkit.sh   # use that binary, skip cargo build
#   MOTO=stock ...                            # unpatched moto_server (simian then times out: see README)
#   KEEP=1 ...                                # keep the work folder (policies, reports, journals, logs)
#
# Per run and per tool: POST /moto-api/reset, seed the same fleet (VPC, 3 subnets, a security group,
# 5,000 running instances tagged aws:autoscaling:groupName=group-NN and simian:opt-in=true, each group
# spread over us-east-1a/b/c), then time the tool with /usr/bin/time -v and check that exactly one instance
# per group was terminated. Measured: wall time, peak RSS, user+sys CPU of the tool, CPU that moto spent
# meanwhile, HTTP requests moto logged meanwhile (same count for both tools), simian's own api_calls.
#
# Installs what it needs: a venv target/venv-bench (moto[server], boto3, chaostoolkit, chaostoolkit-aws),
# /usr/bin/time (Debian package `time`), and builds target/release/simian (cargo build --release).
# Traffic goes only to moto on 127.0.0.1; credentials are fake; instance metadata is disabled.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

RUNS=${RUNS:-3}
# indexed (default): moto_server with O(1) per-instance tag lookup (benches/moto_server_indexed_tags.py says
# why); stock: moto_server as shipped, where one DescribeInstances over 5,000 instances takes ~38 s.
MOTO=${MOTO:-indexed}
export BENCH_INSTANCES=${BENCH_INSTANCES:-5000}
export BENCH_GROUPS=${BENCH_GROUPS:-50}
venv=$root/target/venv-bench
py=$venv/bin/python
helper=$root/benches/aws_bench.py

log() { printf '[bench] %s\n' "$*" >&2; }

# --- installs -----------------------------------------------------------------------------------------
if ! [ -x /usr/bin/time ]; then
  log "installing time (GNU time) with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time
fi
if ! "$py" -c 'import moto.server, boto3, chaoslib, chaosaws' >/dev/null 2>&1 || ! [ -x "$venv/bin/chaos" ]; then
  if ! [ -x "$py" ] || ! [ -x "$venv/bin/pip" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      log "installing python3-venv with apt-get"
      rm -rf "$venv"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
      python3 -m venv "$venv"
    fi
  fi
  log "installing moto[server] boto3 chaostoolkit chaostoolkit-aws into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' boto3 chaostoolkit chaostoolkit-aws
fi
if [ -n "${SIMIAN_BIN:-}" ]; then
  simian=$SIMIAN_BIN # a simian binary built elsewhere (e.g. from another checkout); no build then
else
  log "building simian (cargo build --release; a clean build takes ~10 min on 2 cores)"
  cargo build --release -q --locked
  simian=$root/target/release/simian
fi
[ -x "$simian" ] || { echo "no $simian after cargo build" >&2; exit 1; }

# --- environment: fake credentials, no metadata, no real config ---------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/simian-bench.XXXXXX")
nothing=$work/no-aws-config
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$nothing AWS_SHARED_CREDENTIALS_FILE=$nothing
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_EC2 SIMIAN_POLICY || true

# --- moto on a free loopback port ---------------------------------------------------------------------
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint=http://127.0.0.1:$port
export AWS_ENDPOINT_URL=$endpoint BENCH_ENDPOINT=$endpoint
motolog=$work/moto.log
case "$MOTO" in
  indexed) server=("$py" "$root/benches/moto_server_indexed_tags.py") ;;
  stock) server=("$venv/bin/moto_server") ;;
  *) echo "MOTO must be indexed or stock, not $MOTO" >&2; exit 2 ;;
esac
"${server[@]}" -H 127.0.0.1 -p "$port" >"$motolog" 2>&1 &
moto_pid=$!
cleanup() {
  kill "$moto_pid" 2>/dev/null || true
  wait "$moto_pid" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  curl -sf -o /dev/null "$endpoint/moto-api/data.json" 2>/dev/null && break
  kill -0 "$moto_pid" 2>/dev/null || { cat "$motolog" >&2; echo "moto_server exited" >&2; exit 1; }
  sleep 0.1
done
log "moto_server ($MOTO) $("$py" -c 'import moto; print(moto.__version__)') on $endpoint (pid $moto_pid)"

# request lines moto has logged so far (werkzeug: one line per HTTP request)
requests() { grep -c '" [0-9][0-9][0-9] ' "$motolog" || true; }
# moto's user+sys CPU so far, in clock ticks
moto_ticks() { awk '{print $14 + $15}' "/proc/$moto_pid/stat"; }
# after the tool exits, wait until moto's log has stopped growing (it is written per request)
settle() { local a b; a=$(requests); sleep 0.2; b=$(requests); while [ "$a" != "$b" ]; do a=$b; sleep 0.2; b=$(requests); done; }
hz=$(getconf CLK_TCK)

reseed() { # $1: run dir
  curl -sf -X POST -o /dev/null "$endpoint/moto-api/reset"
  "$py" "$helper" seed "$1" >&2
}

# $1 tool $2 run $3 dir; the command after them. Appends one JSON line to $work/results.jsonl.
measure() {
  local tool=$1 run=$2 dir=$3; shift 3
  local r0 r1 t0 t1 code=0
  settle; r0=$(requests); t0=$(moto_ticks)
  /usr/bin/time -v -o "$dir/time.txt" "$@" >"$dir/stdout" 2>"$dir/stderr" || code=$?
  settle; r1=$(requests); t1=$(moto_ticks)
  local v; v=$("$py" "$helper" verify "$dir")
  "$py" - "$tool" "$run" "$dir" "$code" "$((r1 - r0))" "$(( t1 - t0 ))" "$hz" "$v" >>"$work/results.jsonl" <<'EOF'
import json, re, sys
tool, run, d, code, reqs, ticks, hz, v = sys.argv[1:]
t = open(f"{d}/time.txt").read()
def field(name):
    return re.search(re.escape(name) + r"\s*:\s*(.+)", t).group(1).strip()
parts = [float(x) for x in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
row = {"tool": tool, "run": int(run), "exit": int(code), "wall_s": wall,
       "rss_kib": int(field("Maximum resident set size (kbytes)")),
       "cpu_s": float(field("User time (seconds)")) + float(field("System time (seconds)")),
       "moto_cpu_s": int(ticks) / int(hz), "requests": int(reqs), "api_calls": None}
row.update({k: w for k, w in json.loads(v).items() if k in ("terminated", "one_per_group")})
if tool == "simian":
    try:
        report = json.load(open(f"{d}/stdout"))
        row["api_calls"] = report.get("api_calls")
        row["done"] = sum(1 for f in report["findings"] if f["action"] == "terminate" and f["outcome"] == "done")
    except Exception as e:
        row["error"] = f"unreadable report: {e}"
else:
    try:
        journal = json.load(open(f"{d}/journal.json"))
        row["status"] = journal["status"]
        row["done"] = sum(1 for a in journal["run"] if a["status"] == "succeeded")
    except Exception as e:
        row["error"] = f"unreadable journal: {e}"
print(json.dumps(row))
EOF
  log "$tool run $run: $(tail -n 1 "$work/results.jsonl")"
  if [ "$code" != 0 ]; then log "$tool exited $code; stderr tail:"; tail -n 20 "$dir/stderr" >&2; fi
}

for run in $(seq 1 "$RUNS"); do
  # simian: one `simian run` with an aws_ec2 target, Chaos Monkey probability 1.0, live
  d=$work/run$run-simian; mkdir -p "$d"
  reseed "$d"
  "$py" "$helper" policy "$d" "$endpoint"
  # (simian gets its endpoint from the policy's endpoint_url alone)
  measure simian "$run" "$d" env -u AWS_ENDPOINT_URL "$simian" run --policy "$d/simian.yaml" --format json

  # chaostoolkit: `chaos run` of an experiment with one chaosaws.ec2.actions.terminate_instance per group
  d=$work/run$run-chaostoolkit; mkdir -p "$d"
  reseed "$d"
  "$py" "$helper" experiment "$d"
  measure chaostoolkit "$run" "$d" "$venv/bin/chaos" --no-version-check --settings "$d/settings.yaml" \
    --log-file "$d/chaostoolkit.log" run --journal-path "$d/journal.json" "$d/experiment.json"
done

echo
echo "simian $("$simian" --version 2>/dev/null | head -n1) vs chaostoolkit $("$venv/bin/chaos" --version 2>/dev/null | tail -n1)," \
  "chaostoolkit-aws $("$py" -c 'import chaosaws; print(chaosaws.__version__)'), moto $("$py" -c 'import moto; print(moto.__version__)');" \
  "($MOTO tags); $BENCH_INSTANCES instances in $BENCH_GROUPS groups; $(nproc) cores"
"$py" "$helper" table "$work/results.jsonl"
cp "$work/results.jsonl" "$root/target/bench-aws-results.jsonl"
echo "(raw rows: target/bench-aws-results.jsonl)"
