#!/usr/bin/env bash
# What `--redis-wait-replicas` costs: upload acceptance (`POST /v1/jobs` of a ~150 KB JPEG, C
# clients, gateway without workers, release build) against a Redis primary with one replica on
# loopback, with WAIT off (0) and on (1), in one run. Both Redis servers are started here on free
# ports (append-only, fsync every second, as README.md's "Production Redis" asks).
#
#   scripts/bench-redis-wait.sh        # COUNT=3000 CONCURRENCY=8 ROUNDS=2
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${IMAGEPIPE_CORPUS:-../shared/corpus}
COUNT=${COUNT:-3000}
CONCURRENCY=${CONCURRENCY:-8}
ROUNDS=${ROUNDS:-2}
# shellcheck source=scripts/services.sh
. scripts/services.sh

redis() { # port, more flags...
  local port=$1; shift
  mkdir -p "$WORK/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$port" --save "" \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction "$@" >/dev/null &
  PIDS+=($!)
  for _ in $(seq 100); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return; sleep 0.05; done
  echo "redis on $port did not start" >&2; exit 1
}
PRIMARY=$(free_port)
REPLICA=$(free_port)
redis "$PRIMARY"
redis "$REPLICA" --replicaof 127.0.0.1 "$PRIMARY"
until redis-cli -p "$REPLICA" info replication | grep -q master_link_status:up; do sleep 0.1; done

SAMPLE=$(python3 -c 'import os,sys; fs=sys.argv[1:]; print(min(fs, key=lambda f: abs(os.path.getsize(f)-150000)))' "$CORPUS"/jpeg/*.jpg)
SPEC='{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":256}]}]}'
REDIS_PID=$(redis-cli -p "$PRIMARY" info server | tr -d '\r' | sed -n 's/^process_id://p')

run() { # wait replicas
  local port queue; port=$(free_port); queue="wait$1-$(date +%s%N)"
  "$BIN/gateway" --listen "127.0.0.1:$port" --queue "$queue" \
    --redis-url "redis://127.0.0.1:$PRIMARY/0" --redis-wait-replicas "$1" \
    --storage "file://$WORK/$queue" --max-queue-depth 1000000 >"$WORK/gateway-$queue.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  echo "-- --redis-wait-replicas $1"
  "$BIN/imagepipe" --server "http://127.0.0.1:$port" bench --spec "$SPEC" --uploads-only \
    --count "$COUNT" --concurrency "$CONCURRENCY" \
    --cpu-of "gateway=$pid" --cpu-of "redis=$REDIS_PID" "$SAMPLE"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "${WORK:?}/$queue"
}

echo "== upload acceptance, $CONCURRENCY clients, $(basename "$SAMPLE"), primary + 1 replica on loopback"
for _ in $(seq "$ROUNDS"); do run 0; run 1; done
