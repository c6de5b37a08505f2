#!/usr/bin/env bash
# Store at scale: `simian history --since 1d` over a store that also holds 1,000,000 older findings, and a
# prune of them by `retention`. Usage: benches/store_scale.sh [path/to/simian] [old findings]
# Everything happens in a temp folder; the policy's one host is 127.0.0.1 and `true` its terminate command.
set -euo pipefail
SIMIAN=${1:-target/release/simian}
OLD=${2:-1000000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/gen_policy.py" 1000 "$dir/p.yaml" --live
# A dry run creates the store and its schema (and a day of findings: the recent ones).
for _ in 1 2 3 4 5; do "$SIMIAN" run --policy "$dir/p.yaml" --dry-run >/dev/null 2>&1 || true; done
python3 - "$dir/simian.db" "$OLD" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
now = int(time.time() * 1000)
old = now - 200 * 86400 * 1000
c.execute("INSERT INTO runs (id, seed, mode, started_ms, finished_ms) VALUES ('old', '1', 'live', ?, ?)", (old, old))
rows = ((old - i, 'old', old - i, 'live', 0, 'doctor', 'unhealthy', 'done', 'fleet', f'h{i % 1000}', f'g{i % 100}',
         'a', 'info', f'probe {i} healthy') for i in range(n))
c.executemany("INSERT INTO findings (id, run_id, at_ms, mode, dry_run, monkey, action, outcome, target, instance, grp,"
              " zone, severity, message) VALUES (-?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
c.commit()
# As simian's own writes would leave it (SQLite checkpoints its WAL every 1,000 pages).
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(f"store: {c.execute('SELECT COUNT(*) FROM findings').fetchone()[0]} findings")
PY
ls -la "$dir/simian.db" | awk '{printf "store file: %.0f MiB\n", $5 / 1048576}'
for _ in 1 2 3; do
  /usr/bin/time -f "history --since 1d: %e s, %M KiB" "$SIMIAN" history --policy "$dir/p.yaml" --since 1d --format json \
    | python3 -c "import json,sys; print(len(json.load(sys.stdin)), 'recent findings')"
done
# The next round prunes everything past `retention` (default 90d).
/usr/bin/time -o "$dir/t" -f "a round that prunes them: %e s" "$SIMIAN" run --policy "$dir/p.yaml" --dry-run >/dev/null 2>&1; cat "$dir/t"
python3 -c "import sqlite3,sys; print('after the prune:', sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM findings').fetchone()[0], 'findings')" "$dir/simian.db"
