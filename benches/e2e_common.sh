# Shared by the end-to-end benches (sourced): a temporary folder and the processes to stop on
# exit, the servers' start, their CPU time, one measured run. The caller sets `secs`, `conns`
# and `size`, and adds the processes it starts to `pids`.

bin=target/release/examples
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# start NAME ENV... : starts a server on core 0 on a free port; prints its PID and URL. It runs
# in a subshell (`< <(start ...)`), so the caller records the PID for `cleanup`.
start() {
  local name="$1" out; shift
  out="$(mktemp -p "$tmp" "$name.XXXX")"
  env -i PATH="$PATH" BIND_ADDR=127.0.0.1:0 "$@" taskset -c 0 "$bin/$name" >"$out" 2>/dev/null &
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "$!" "http://$(head -1 "$out" | cut -d' ' -f3)/webhook"
}

ticks="$(getconf CLK_TCK)"
# cpu PID: the process's user and system CPU time so far, in clock ticks.
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
