#!/usr/bin/env bash
# Where the server's time goes at full speed: `perf record` (DWARF call
# graphs) on the pinned server while `offer-sim load` drives SelectOffer
# with varied customers and redemptions flowing back (BENCHMARKS.md,
# "Where the time goes (profile)"). Unlike callgrind, which slows the server
# about 50 times, work due on the wall clock (checkpoints, snapshots) keeps
# its real share.
#
#   benches/profile.sh                   # run from the project root
#
# Server on core 0, load generator on core 1, 32 callers: a 3 s warm-up,
# then 8 s of load with 4 s recorded from its 2nd second. Prints the
# server's samples by thread, then the project's functions and sled's by
# inclusive share. CONFIG=config/bench-k12-d64.toml CAMPAIGN=bench-k12-d64
# SCENARIO=simulator/scenarios/cold-start.toml for the contextual campaign;
# B the binaries' directory (default target/release); OUT keeps the
# recording (default: removed); SKIP_BUILD=1 reuses target/release.
set -euo pipefail
B="${B:-target/release}"
CAMPAIGN="${CAMPAIGN:-coffee}"
command -v perf >/dev/null || { echo "perf missing: apt-get install linux-perf" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p offer-bandit -p offer-sim
. "$(dirname "$0")/pinned_server.sh"
OUT="${OUT:-$W/perf.data}"
extra=()
[ -z "${CONFIG:-}" ] || extra+=(--config "$CONFIG")
scenario=()
[ -z "${SCENARIO:-}" ] || scenario+=(--scenario "$SCENARIO")
load() { # load DURATION
  taskset -c 1 "$B/offer-sim" load --target "http://$ADDR" --concurrency 32 --duration "$1" \
    --campaign "$CAMPAIGN" "${scenario[@]}" >/dev/null 2>&1
}
start_pinned "${extra[@]}"
load 3s
load 8s &
LOAD=$!
sleep 2
perf record -F 1000 --call-graph dwarf,8192 -p "$PID" -o "$OUT" -- sleep 4 >/dev/null 2>&1
wait "$LOAD" || true
stop_pinned
echo "samples by thread:"
perf report -i "$OUT" --no-children --sort comm --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -12
echo "inclusive, the project's functions and sled's (1% and up):"
perf report -i "$OUT" --children --sort sym --stdio -g none --percent-limit 1 2>/dev/null |
  grep -E '^ +[0-9].*\] (offer_bandit::|<offer_bandit::|sled::)' | grep -v inlined | head -40
