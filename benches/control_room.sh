#!/usr/bin/env bash
# The control room at scale: `GET /api/v1/findings?limit=500` over a store of 100,000 findings, what one
# page load and one poll transfer, and the daemon's RSS idle and then with the dashboard open in headless
# chromium for a minute. Usage: benches/control_room.sh [path/to/simian] [findings]
# Everything runs in a temp folder on loopback; the policy's hosts are never acted on (dry-run, far schedules).
set -euo pipefail
SIMIAN=${1:-target/release/simian}
N=${2:-100000}
dir=$(mktemp -d)
daemon=""
browser=""
trap '[ -n "$browser" ] && kill "$browser" 2>/dev/null; [ -n "$daemon" ] && kill "$daemon" 2>/dev/null; sleep 1; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=bench-t0ken-0123456789abcdef
{
  printf 'version: 1\nname: bench\napi:\n  token: "%s"\ntargets:\n  - name: lab\n    type: hosts\n' "$token"
  printf '    terminate: ["true"]\n    isolate: ["true"]\n    restore: ["true"]\n    hosts:\n'
  for i in $(seq 1 20); do
    printf '      - { id: web-%s, group: g%s, zone: a, tags: { "simian:opt-in": "true" } }\n' "$i" $((i % 4))
  done
  printf 'monkeys:\n  chaos:\n    schedule: "0 0 1 1 *"\n  gorilla:\n    schedule: "0 0 1 1 *"\n    zone: a\n'
} >"$dir/p.yaml"
"$SIMIAN" run --policy "$dir/p.yaml" --dry-run >/dev/null 2>&1 || true
python3 - "$dir/simian.db" "$N" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
now = int(time.time() * 1000)
c.execute("INSERT INTO runs (id, seed, mode, started_ms, finished_ms) VALUES ('bench', '1', 'live', ?, ?)", (now, now))
monkeys = ['chaos', 'gorilla', 'doctor', 'latency']
rows = (('bench', now - n + i, 'live', 0, monkeys[i % 4], 'terminate', 'done', 'lab', f'web-{i % 20}', f'g{i % 4}',
         'a', 'info' if i % 3 else 'warning', f'finding {i}: something happened to web-{i % 20}') for i in range(n))
c.executemany("INSERT INTO findings (run_id, at_ms, mode, dry_run, monkey, action, outcome, target, instance, grp,"
              " zone, severity, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(f"store: {c.execute('SELECT COUNT(*) FROM findings').fetchone()[0]} findings")
PY
"$SIMIAN" daemon --policy "$dir/p.yaml" --listen "127.0.0.1:$port" 2>"$dir/daemon.log" &
daemon=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$daemon/status"; }
echo "daemon RSS idle: $(rss)"
chromium --headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --disable-default-apps --user-data-dir="$dir/chrome" \
  --host-resolver-rules="MAP * ~NOTFOUND , EXCLUDE 127.0.0.1" --remote-debugging-port=0 \
  "http://127.0.0.1:$port/" >/dev/null 2>&1 &
browser=$!
sleep 60
echo "daemon RSS after 60 s with the dashboard open (polling every 3 s): $(rss)"
kill "$browser"; browser=""
python3 - "$port" <<'PY'
import statistics, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
def get(path):
    t = time.perf_counter()
    with urllib.request.urlopen(base + path) as r:
        body = r.read()
    return (time.perf_counter() - t) * 1000, len(body)
for path in ["/api/v1/findings?limit=500", "/api/v1/findings?limit=500&monkey=doctor&severity=warning",
             "/api/v1/findings?limit=100"]:
    get(path)
    ms = sorted(get(path)[0] for _ in range(30))
    print(f"GET {path}: p50 {statistics.median(ms):.1f} ms, p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, max {ms[-1]:.1f} ms")
page = sum(get(p)[1] for p in ["/", "/app.js", "/app.css"])
poll = sum(get(p)[1] for p in ["/api/v1/status", "/api/v1/faults", "/api/v1/schedule", "/api/v1/findings?limit=100",
                                "/api/v1/outbox", "/api/v1/experiments?limit=6", "/api/v1/fleet"])
print(f"page load: {page / 1024:.1f} KiB of assets + {poll / 1024:.1f} KiB for the first poll = {(page + poll) / 1024:.1f} KiB")
PY
echo "daemon RSS after the timed requests (90 pages of 500 findings): $(rss)"
