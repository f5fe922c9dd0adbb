#!/usr/bin/env bash
# End to end over 127.0.0.1: the demo receiver with the full stack (client IP, allowlist,
# rate limit, buffering, verification, in-memory replay) against the bare axum server whose
# handler only reads the body (examples/bare.rs), loaded by one generator (examples/load.rs)
# in the same run, alternately, twice each. Servers run on core 0, the generator on core 1.
# Bounded: WARMUP_SECS seconds of warm-up per server, then SECS seconds per run.
#
# Usage: benches/e2e.sh [SECS=5] [CONNECTIONS=32] [BODY_BYTES=1024] [WARMUP_SECS=1] [NAME=VALUE ...]
# The NAME=VALUE settings are given to the receiver after those of benches/e2e_settings.sh, and
# win over them: for example `bash benches/e2e.sh 5 32 1024 8 TOLERANCE_SECS=2 REPLAY_TTL_SECS=4`
# measures a receiver whose store has reached its steady state, event ids expiring as fast as
# they arrive, where the default settings keep every id and the store grows for the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"; conns="${2:-32}"; size="${3:-1024}"; warmup="${4:-1}"; shift $(($# < 4 ? $# : 4))
for setting in "$@"; do
  [[ "$setting" == [A-Z]*=* ]] || { echo "not a NAME=VALUE setting: $setting" >&2; exit 2; }
done
cargo build --release --quiet --example receiver --example bare --example load
bin=target/release/examples
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# start NAME ENV... : starts a server on core 0 on a free port; prints its PID and URL. It runs
# in a subshell (`< <(start ...)`), so the caller records the PID for `cleanup`.
start() {
  local name="$1"; shift
  env -i PATH="$PATH" BIND_ADDR=127.0.0.1:0 "$@" taskset -c 0 "$bin/$name" >"$tmp/$name.out" 2>/dev/null &
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$tmp/$name.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "$!" "http://$(head -1 "$tmp/$name.out" | cut -d' ' -f3)/webhook"
}

read -r bare_pid bare_url < <(start bare)
pids+=("$bare_pid")
source benches/e2e_settings.sh
read -r full_pid full_url < <(start receiver "${receiver_env[@]}" "$@")
pids+=("$full_pid")
ticks="$(getconf CLK_TCK)"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure NAME PID URL: one bounded run; prints its figures and server CPU per request.
measure() {
  local before after out reqs
  before="$(cpu "$2")"
  out="$(taskset -c 1 "$bin/load" "$3" "$secs" "$conns" "$size")"
  after="$(cpu "$2")"
  reqs="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")"
  echo "$1 $out server_cpu_us_per_req=$(awk -v d=$((after - before)) -v t="$ticks" -v r="$reqs" 'BEGIN { printf "%.1f", d * 1e6 / t / r }')"
}

taskset -c 1 "$bin/load" "$bare_url" "$warmup" "$conns" "$size" >/dev/null
taskset -c 1 "$bin/load" "$full_url" "$warmup" "$conns" "$size" >/dev/null
for round in 1 2; do
  measure bare "$bare_pid" "$bare_url"
  measure full_stack "$full_pid" "$full_url"
done
