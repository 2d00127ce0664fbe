#!/usr/bin/env bash
# End-to-end benchmarks of the whole service, as real processes on this machine (release build):
#   1. upload acceptance: `POST /v1/jobs` of a ~150 KB JPEG, C clients, gateway without workers
#   2. burst: N uploads of the Kodak JPEGs, C clients, 256 px thumbnails, one worker
#      (--threads 2), waited to the end; beside `worker transform` on the same files and
#      threads in the same run (the engine's own throughput) -> ratio; and the Redis
#      commands each job cost (INFO commandstats, script-run commands counted one by one)
#   2b. drain: the same uploads first, then the worker on the full queue
#   3. thread scaling: the same burst with `worker --threads 1`
#   4. latency: open loop at RATE images/s, p50/p95/p99 from acceptance to `succeeded`
# Redis: the one at IMAGEPIPE_REDIS_URL (default 127.0.0.1:6379), with a fresh queue name per
# run. Storage: a temporary directory.
#
#   scripts/bench-e2e.sh              # COUNT=2000 CONCURRENCY=8 RATE=80 PREFETCH=16
#   PHASES="2" scripts/bench-e2e.sh   # only some of the phases
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${IMAGEPIPE_CORPUS:-../shared/corpus}
COUNT=${COUNT:-2000}
CONCURRENCY=${CONCURRENCY:-8}
RATE=${RATE:-80}
PREFETCH=${PREFETCH:-16}
REDIS=${IMAGEPIPE_REDIS_URL:-redis://127.0.0.1:6379/0}
PHASES=${PHASES:-1 2 2b 3 4}
phase() { [[ " $PHASES " == *" $1 "* ]]; }
# shellcheck source=scripts/services.sh
. scripts/services.sh

SPEC='{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":256,"height":256}],"format":"jpeg","quality":80}]}'

REDIS_PID=$(redis-cli -u "$REDIS" info server | tr -d '\r' | sed -n 's/^process_id://p')
# Where the CPU goes: the load tool reports the CPU time per image of these processes.
cpu_of() {
  local args=(--cpu-of "gateway=$GATEWAY_PID" --cpu-of "redis=$REDIS_PID")
  [ -n "${WORKER_PID:-}" ] && args+=(--cpu-of "worker=$WORKER_PID")
  echo "${args[@]}"
}

# Starts a gateway on a fresh queue; sets SERVER and QUEUE.
start_gateway() {
  QUEUE="bench-$(date +%s%N)"
  local port; port=$(free_port)
  SERVER="http://127.0.0.1:$port"
  "$BIN/gateway" --listen "127.0.0.1:$port" --queue "$QUEUE" --redis-url "$REDIS" \
    --storage "file://$WORK/$QUEUE" --max-queue-depth 1000000 >"$WORK/gateway-$QUEUE.log" 2>&1 &
  GATEWAY_PID=$!
  PIDS+=($!)
  for _ in $(seq 100); do curl -fs "$SERVER/healthz" >/dev/null && return; sleep 0.1; done
  echo "gateway did not start" >&2; exit 1
}
worker_command() { # threads
  echo "$BIN/worker --queue $QUEUE --redis-url $REDIS --storage file://$WORK/$QUEUE --threads $1 --prefetch $PREFETCH >$WORK/worker-$QUEUE.log 2>&1"
}
start_worker() { # threads
  eval "$(worker_command "$1") &"
  WORKER_PID=$!
  PIDS+=($!)
  sleep 1
}
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
  WORKER_PID=""
  redis-cli -u "$REDIS" --scan --pattern "{$QUEUE}:*" | xargs -r -n 500 redis-cli -u "$REDIS" del >/dev/null
}

# The corpus JPEG closest to 150 KB.
SAMPLE=$(python3 -c 'import os,sys; fs=sys.argv[1:]; print(min(fs, key=lambda f: abs(os.path.getsize(f)-150000)))' "$CORPUS"/jpeg/*.jpg)
# The load tool against the current gateway, with the CPU of every process reported.
bench() { "$BIN/imagepipe" --server "$SERVER" bench --spec "$SPEC" $(cpu_of) "$@"; }
# A closed-loop burst of the corpus beside the engine alone on the same threads.
burst() { # threads, more flags...
  local threads=$1; shift
  bench --count "$COUNT" --concurrency "$CONCURRENCY" --compare-with "$BIN/worker" \
    --threads "$threads" "$@" "$CORPUS/jpeg"
}

# Redis commands per job over a phase: `INFO commandstats` (commands run by scripts counted
# one by one) before and after, divided by the jobs of the phase.
# Round trips: requests Redis read off its sockets (`total_reads_processed`), every client's.
commandstats() {
  redis-cli -u "$REDIS" info commandstats | tr -d '\r' | grep '^cmdstat_'
  redis-cli -u "$REDIS" info stats | tr -d '\r' | sed -n 's/^total_reads_processed:/reads:calls=/p' | sed 's/$/,usec=0/'
}
commands_per_job() { # before-file, jobs
  commandstats > "$1.after"
  python3 - "$1" "$2" "$1.after" <<'PY'
import sys
def parse(lines):
    out = {}
    for line in lines:
        name, fields = line.split(":", 1)
        kv = dict(f.split("=") for f in fields.split(","))
        out[name[len("cmdstat_"):] if name.startswith("cmdstat_") else name] = (int(kv["calls"]), float(kv["usec"]))
    return out
before = parse(open(sys.argv[1]).read().split())
after = parse(open(sys.argv[3]).read().split())
jobs = int(sys.argv[2])
diff = {k: (v[0] - before.get(k, (0, 0))[0], v[1] - before.get(k, (0, 0))[1]) for k, v in after.items()}
reads = diff.pop("reads", (0, 0))[0]
diff = {k: v for k, v in diff.items() if v[0] > 0 and k not in ("info", "ping")}
calls = sum(v[0] for v in diff.values())
print(f"Redis round trips per job: {reads / jobs:.2f} (socket reads, every client's)")
# A script's time includes the commands it runs, which are also counted on their own lines.
print(f"Redis commands per job: {calls / jobs:.1f}, by server time (scripts include their commands)")
for k, v in sorted(diff.items(), key=lambda kv: -kv[1][1])[:20]:
    print(f"  {k:<18} {v[0] / jobs:6.2f} per job   {v[1] / jobs:6.1f} µs")
PY
}

if phase 1; then
  echo "== 1. upload acceptance (gateway alone, $CONCURRENCY clients, $(basename "$SAMPLE"), $(($(stat -c %s "$SAMPLE") / 1000)) KB)"
  start_gateway
  bench --uploads-only --count "$COUNT" --concurrency "$CONCURRENCY" "$SAMPLE"
  stop_all
fi
if phase 2; then
  echo
  echo "== 2. burst, worker --threads 2 (and the engine alone on the same files and threads)"
  start_gateway; start_worker 2
  commandstats > "$WORK/commandstats"
  burst 2
  commands_per_job "$WORK/commandstats" "$COUNT"
  stop_all
fi
if phase 2b; then
  echo
  echo "== 2b. drain, worker --threads 2: the same uploads first, then the worker started on the full queue"
  start_gateway
  burst 2 --after-uploads "$(worker_command 2) & echo \$! > $WORK/worker.pid"
  PIDS+=("$(cat "$WORK/worker.pid")")
  stop_all
fi
if phase 3; then
  echo
  echo "== 3. burst, worker --threads 1"
  start_gateway; start_worker 1
  burst 1
  stop_all
fi
if phase 4; then
  echo
  echo "== 4. latency, open loop at $RATE images/s, worker --threads 2"
  start_gateway; start_worker 2
  bench --count $((RATE * 10)) --rate "$RATE" "$CORPUS/jpeg"
  stop_all
fi
