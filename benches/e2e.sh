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
source benches/e2e_common.sh
cargo build --release --quiet --example receiver --example bare --example load

read -r bare_pid bare_url < <(start bare)
pids+=("$bare_pid")
source benches/e2e_settings.sh
read -r full_pid full_url < <(start receiver "${receiver_env[@]}" "$@")
pids+=("$full_pid")

taskset -c 1 "$bin/load" "$bare_url" "$warmup" "$conns" "$size" >/dev/null
taskset -c 1 "$bin/load" "$full_url" "$warmup" "$conns" "$size" >/dev/null
for round in 1 2; do
  measure bare "$bare_pid" "$bare_url"
  measure full_stack "$full_pid" "$full_url"
done
