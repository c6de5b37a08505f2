#!/usr/bin/env bash
# Fleets of 100,000: the loader (`simian validate`) over hosts policies of 1k/10k/100k hosts, hostile inputs
# (a deeply nested flow sequence, a 50 MB file), and a live Chaos round over 10,000 hosts in 1,000 groups whose
# terminate command is `true` (README "Fleets of 100,000 instances"). Usage: benches/scale.sh [path/to/simian]
# Everything stays in a temp folder; every host address is on loopback and nothing is signalled.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SIMIAN=${1:-$here/../target/release/simian}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "| input | wall s | peak RSS MiB | result |"
echo "|---|---|---|---|"
measure() { # name, then the command
  local name=$1; shift
  local rc=0
  /usr/bin/time -o "$dir/t" -f "%e %M" "$@" >"$dir/out" 2>"$dir/err" || rc=$?
  read -r secs kib < <(tail -n 1 "$dir/t")
  local what
  what=$(tail -c 300 "$dir/err" | tr '\n' ' ' | sed 's/|/\\|/g' | cut -c1-110)
  [ "$rc" = 0 ] && what="ok"
  printf '| %s | %.2f | %.0f | %s |\n' "$name" "$secs" "$((kib / 1024))" "$what"
}
for n in 1000 10000 100000; do
  python3 "$here/gen_policy.py" "$n" "$dir/p$n.yaml"
  measure "validate, $n hosts ($(du -k "$dir/p$n.yaml" | cut -f1) KiB)" "$SIMIAN" validate --policy "$dir/p$n.yaml"
done
# Policies with errors: the fast path gives up and the error is located (semantic: a lean locator; structural:
# the tree path, host by host).
sed '$ s/id: h99999/id: h99998/' "$dir/p100000.yaml" >"$dir/dup.yaml"
measure "validate, 100000 hosts, one duplicate id" "$SIMIAN" validate --policy "$dir/dup.yaml"
sed '$ s/zone: \([abc]\)/zone: [\1]/' "$dir/p100000.yaml" >"$dir/bad1.yaml"
measure "validate, 100000 hosts, one ill-typed value" "$SIMIAN" validate --policy "$dir/bad1.yaml"
sed 's/zone: \([abc]\)/zone: [\1]/' "$dir/p100000.yaml" >"$dir/badall.yaml"
measure "validate, 100000 hosts, every host ill-typed" "$SIMIAN" validate --policy "$dir/badall.yaml"
python3 "$here/gen_policy.py" --nested 200000 "$dir/nested.yaml"
measure "validate, 200 KB nested flow sequence" "$SIMIAN" validate --policy "$dir/nested.yaml"
python3 -c "import sys; open(sys.argv[1],'w').write('version: 1\n' + '# padding padding padding padding padding padding\n' * 1000000)" "$dir/big.yaml"
measure "validate, 50 MB file" "$SIMIAN" validate --policy "$dir/big.yaml"
mkdir "$dir/live"
python3 "$here/gen_policy.py" 10000 "$dir/live/p.yaml" --live
measure "live Chaos round, 10,000 hosts / 1,000 groups" "$SIMIAN" run --policy "$dir/live/p.yaml" --format json
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('  kills done:', sum(1 for f in r['findings'] if f['outcome']=='done'))" "$dir/out"
