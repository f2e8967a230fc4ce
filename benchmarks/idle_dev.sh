#!/usr/bin/env bash
# An idle lakehouse stays idle: after `make demo` in a checkout, run `make dev` there for
# SECONDS (default 600) without new data and count the runs it launched (target: none).
#
#     make demo && benchmarks/idle_dev.sh [SECONDS]
#
# Prints the run count before and after and the newest runs; the dev log goes to
# data/idle_dev.log. `make dev` runs in its own process group and is stopped with it.
set -u
cd "$(dirname "$0")/.."
seconds="${1:-600}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/data/dagster}"
count() {
  .venv/bin/python - <<'PY' 2>/dev/null
import dagster as dg
with dg.DagsterInstance.get() as instance:
    runs = instance.get_runs()
    print(len(runs))
    for run in runs[:10]:
        keys = sorted(k.to_user_string() for k in (run.asset_selection or []))
        print("  ", run.job_name, run.status.value, keys, run.run_id[:8])
PY
}
before="$(count | head -1)"
setsid make dev > data/idle_dev.log 2>&1 &
group=$!
sleep "$seconds"
after="$(count)"
kill -TERM -- -"$group" 2>/dev/null
sleep 10
kill -KILL -- -"$group" 2>/dev/null
echo "runs before: $before; after ${seconds} s idle: $(echo "$after" | head -1)"
echo "$after" | tail -n +2
echo "automation ticks that launched runs: $(grep -c 'Submitting [1-9]' data/idle_dev.log)"
[ "$before" = "$(echo "$after" | head -1)" ]
