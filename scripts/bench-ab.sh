#!/usr/bin/env bash
# A/B of two revisions' benchmark on this machine (docs/performance.md,
# "Running"): builds bench/ of each revision, runs one scenario alternately
# PAIRS times (A, B, A, B, …; River's baseline skipped), and prints every
# figure's values per revision with their medians. A single run on a shared
# two-core machine spreads by 15 % or more; alternating pairs minutes apart
# is how docs/performance.md compares a change with what came before.
#
#   scripts/bench-ab.sh REV_A REV_B SCENARIO [PAIRS] [BENCH FLAGS...]
#   scripts/bench-ab.sh 13963e8 HEAD throughput-noop 3 -workers 100
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 REV_A REV_B SCENARIO [PAIRS] [BENCH FLAGS...]" >&2
  exit 2
fi
rev_a=$1 rev_b=$2 scenario=$3
shift 3
pairs=3
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
  pairs=$1
  shift
fi
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
cleanup() {
  for side in a b; do
    git -C "$root" worktree remove --force "$work/$side" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

for side in a b; do
  rev=$rev_a
  [ "$side" = b ] && rev=$rev_b
  git -C "$root" worktree add --detach -q "$work/$side" "$rev"
  (cd "$work/$side/bench" && go build -o "$work/bench-$side" .)
  echo "$side = $(git -C "$root" rev-parse --short "$rev") ($rev)"
done

cd "$work"
for i in $(seq 1 "$pairs"); do
  for side in a b; do
    if ! "$work/bench-$side" -runs 1 -skip-baseline -out "$work/results-$side-$i" "$@" "$scenario" >"$work/run-$side-$i.txt" 2>&1; then
      cat "$work/run-$side-$i.txt" >&2
      exit 1
    fi
    echo "pair $i, $side: done"
  done
done

# The bench prints a table whose columns are separated by two or more
# spaces: scenario, figure, value, unit, …
awk -F '  +' '
  FNR == 1 { k = split(FILENAME, p, "/"); side = substr(p[k], 5, 1) } # run-<side>-<pair>.txt
  $2 == "scenario" || NF < 5 || $4 !~ /^[0-9.]+$/ { next }
  {
    key = $3 " (" $5 ")"
    if (!(key in seen)) { seen[key] = ++n; order[n] = key }
    vals[key, side] = vals[key, side] " " $4
  }
  function median(s,   a, k, i, j, t) {
    k = split(s, a, " ")
    for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  END {
    for (i = 1; i <= n; i++) {
      key = order[i]
      printf "%s\n  a:%s  (median %s)\n  b:%s  (median %s)\n", key, vals[key, "a"], median(vals[key, "a"]), vals[key, "b"], median(vals[key, "b"])
    }
  }
' $(for i in $(seq 1 "$pairs"); do echo "$work/run-a-$i.txt" "$work/run-b-$i.txt"; done)
