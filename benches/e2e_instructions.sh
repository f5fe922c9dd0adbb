#!/usr/bin/env bash
# End to end, counted: the user-space instructions each server spends per request, under
# callgrind, with the load of benches/e2e.sh (examples/load.rs: 32 connections on 127.0.0.1,
# a fresh signed event per request). The steady figure next to e2e.sh's CPU time: on a shared
# machine that time moves by several percent between runs, while this count moves by well under
# one. It cannot see the kernel, where most of a loopback request's time goes (see BENCHMARKS.md).
#
# Each server runs under valgrind, alone, on core 0 (the generator on core 1): warmed up for 3 s,
# then its counters are zeroed, loaded for SECS seconds and dumped. Under valgrind `sha2` takes
# its software path, about 62,000 instructions for the receiver's HMAC of 1 KiB
# (`cargo bench --bench instructions`, mode `hmac`); the bare server computes none.
#
# Usage: benches/e2e_instructions.sh [SECS=5] [RUNS=2] [NAME=EXECUTABLE ...]
# The extra NAME=EXECUTABLE servers are run as the receiver, with its settings: a way to compare
# a receiver built from another revision in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"; runs="${2:-2}"; shift $(($# < 2 ? $# : 2))
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)" >&2; exit 2; }
cargo build --release --quiet --example receiver --example bare --example load
bin=target/release/examples
tmp="$(mktemp -d)"
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"; }
trap cleanup EXIT
source benches/e2e_settings.sh
servers=("bare=$bin/bare" "receiver=$bin/receiver" "$@")

# count NAME EXECUTABLE: one run of one server; prints its requests and instructions per request.
count() {
  local name="$1" exe="$2" settings=() url out requests total
  if [ "$name" != bare ]; then settings=("${receiver_env[@]}"); fi
  env -i PATH="$PATH" BIND_ADDR=127.0.0.1:0 "${settings[@]}" taskset -c 0 \
    valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.%p" "$exe" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pid=$!
  for _ in $(seq 300); do
    if grep -q '^listening on ' "$tmp/$name.out" 2>/dev/null; then break; fi
    sleep 0.1
  done
  url="http://$(head -1 "$tmp/$name.out" | cut -d' ' -f3)/webhook"
  taskset -c 1 "$bin/load" "$url" 3 32 1024 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  out="$(taskset -c 1 "$bin/load" "$url" "$secs" 32 1024)"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  requests="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")"
  total="$(awk '/^summary:/ { print $2 }' "$tmp/$name".*.1)"
  rm -f "$tmp/$name".*
  echo "$name requests=$requests instructions_per_request=$((total / requests)) $(grep -o 'non_2xx=[0-9]* duplicates=[0-9]*' <<<"$out")"
}

for run in $(seq "$runs"); do
  for server in "${servers[@]}"; do
    count "${server%%=*}" "${server#*=}"
  done
done
