# Sourced by the latency benchmarks: a work directory $W removed on exit,
# and `start_pinned` / `stop_pinned`, a release server on core 0 (port 0,
# a fresh data directory, the extra arguments given) whose address ends up
# in $ADDR; with METRICS=1 its metrics listener's in $MADDR (port 0 too),
# else no metrics. Needs $B (the binaries' directory).
W="$(mktemp -d)"
PID=""
cleanup() {
  [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

start_pinned() {
  rm -rf "$W/data"
  local metrics=(--no-metrics)
  [ -z "${METRICS:-}" ] || metrics=(--metrics-listen 127.0.0.1:0)
  taskset -c 0 "$B/offer-bandit" serve --listen 127.0.0.1:0 "${metrics[@]}" \
    --data-dir "$W/data" "$@" >"$W/log" 2>&1 &
  PID=$!
  ADDR=""
  for _ in $(seq 100); do
    ADDR=$(sed -n 's/^offer-bandit listening on //p' "$W/log")
    MADDR=$(sed -n 's/^offer-bandit metrics on //p' "$W/log")
    if [ -n "$ADDR" ] && { [ -z "${METRICS:-}" ] || [ -n "$MADDR" ]; }; then
      return 0
    fi
    sleep 0.1
  done
  cat "$W/log" >&2
  exit 1
}

stop_pinned() {
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}
