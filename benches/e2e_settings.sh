# The demo receiver's settings in the end-to-end benches, sourced by e2e.sh and
# e2e_instructions.sh so that both measure the same receiver: every layer on, a rate limit no
# run reaches, and room in the memory store for every event of the runs (each request is a new
# event), so the store never fills.
receiver_env=(ALLOW_CIDRS=127.0.0.0/8 RATE_PER_SEC=1000000000 REPLAY_STORE=memory
  REPLAY_MAX_ENTRIES=10000000)
