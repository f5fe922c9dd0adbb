#!/usr/bin/env bash
# End to end with the Redis inbox, over 127.0.0.1: the demo receiver with the Redis replay store
# (`dedup`) against the same receiver also queueing each event in the Redis inbox (`inbox`:
# INBOX=redis WORKERS=0), loaded by examples/load.rs alternately, twice each, in the same run.
# Then the Redis commands each event cost (from Redis's own count), and the demo worker
# (examples/worker.rs, no handler delay: it prints its line and acknowledges) draining every
# event the inbox runs queued, timed. Servers run on core 0, the generator on core 1; Redis
# (started here, on a free port, without persistence) and the worker are not pinned.
#
# Usage: benches/e2e_inbox.sh [SECS=5] [CONNECTIONS=32] [BODY_BYTES=1024] [WARMUP_SECS=1] [WORKERS=32]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"; conns="${2:-32}"; size="${3:-1024}"; warmup="${4:-1}"; workers="${5:-32}"
command -v redis-server >/dev/null || { echo "redis-server is needed (Debian: apt-get install redis-server)" >&2; exit 2; }
source benches/e2e_common.sh
cargo build --release --quiet --example receiver --example worker --example load

# A Redis of its own on a random port (another port if that one is taken).
redis() { redis-cli -p "$port" "$@"; }
for _ in $(seq 10); do
  port=$((20000 + RANDOM % 20000))
  if [ "$(redis PING 2>/dev/null)" = PONG ]; then continue; fi
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  pids+=("$!")
  for _ in $(seq 100); do if [ "$(redis PING 2>/dev/null)" = PONG ]; then break 2; fi; sleep 0.05; done
done
url="redis://127.0.0.1:$port/"
# redis_counts: the calls Redis has answered so far: scripts (`EVALSHA`, one round trip each) and
# every command, those run inside scripts included (`INFO` and `PING` left out).
redis_counts() {
  redis INFO commandstats | awk -F'[:=,]' '
    /^cmdstat_/ && !/^cmdstat_(info|ping)/ { all += $3 }
    /^cmdstat_eval/ { scripts += $3 }
    END { print scripts + 0, all + 0 }'
}
# per_event BEFORE_SCRIPTS BEFORE_ALL EVENTS: the Redis calls since, per event.
per_event() {
  read -r scripts all < <(redis_counts)
  awk -v s=$((scripts - $1)) -v a=$((all - $2)) -v n="$3" \
    'BEGIN { printf "redis_scripts_per_event=%.2f redis_commands_per_event=%.2f", s / n, a / n }'
}

common=(REPLAY_STORE=redis REDIS_URL="$url" REPLAY_MAX_ENTRIES=10000000)
read -r dedup_pid dedup_url < <(start receiver "${common[@]}")
pids+=("$dedup_pid")
read -r inbox_pid inbox_url < <(start receiver "${common[@]}" INBOX=redis WORKERS=0)
pids+=("$inbox_pid")

taskset -c 1 "$bin/load" "$dedup_url" "$warmup" "$conns" "$size" >/dev/null
taskset -c 1 "$bin/load" "$inbox_url" "$warmup" "$conns" "$size" >/dev/null
for round in 1 2; do
  measure dedup "$dedup_pid" "$dedup_url"
  read -r scripts all < <(redis_counts)
  line="$(measure inbox "$inbox_pid" "$inbox_url")"
  echo "$line $(per_event "$scripts" "$all" "$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")")"
done

# The worker drains what the inbox runs (and their warm-up) queued.
queued="$(redis XLEN '{webhooks}:queue')"
read -r scripts all < <(redis_counts)
env -i PATH="$PATH" REDIS_URL="$url" WORKERS="$workers" "$bin/worker" >"$tmp/worker.out" 2>/dev/null &
worker_pid=$!
pids+=("$worker_pid")
started="$(date +%s.%N)"
while [ "$(redis XLEN '{webhooks}:queue')" -gt 0 ]; do sleep 0.05; done
ended="$(date +%s.%N)"
handled=$(($(wc -l <"$tmp/worker.out") - 1))
echo "worker queued=$queued handled=$handled concurrency=$workers events_per_sec=$(awk -v n="$queued" -v a="$started" -v b="$ended" 'BEGIN { printf "%.0f", n / (b - a) }') worker_cpu_us_per_event=$(awk -v d="$(cpu "$worker_pid")" -v t="$ticks" -v n="$queued" 'BEGIN { printf "%.1f", d * 1e6 / t / n }') $(per_event "$scripts" "$all" "$queued")"
