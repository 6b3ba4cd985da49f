#!/usr/bin/env bash
# SelectOffer against Health/Check on one server, pass after pass: a
# server option's cost or gain measured with the client and body of the
# h2load ratio in BENCHMARKS.md (h2load, 16 connections x 16 streams,
# 200,000 calls a pass, `run.sh`'s request), but PASSES (default 3) pairs
# per server start after a warm-up of 30,000 SelectOffers, so that two
# settings can be compared in alternating server starts (BENCHMARKS.md,
# "Learning in batches"). A pass counts only if every call succeeded and
# carried a reply: h2load counts a gRPC error (HTTP 200, no message) as a
# success.
#
#   benches/passes.sh --learn-interval 5ms     # run from the project root
#
# The arguments go to `offer-bandit serve`. Prints one line per pass:
# SelectOffer/s, Health/Check/s and their ratio, and for each the server's
# CPU time per call (user + system, and system alone, from /proc/PID/stat)
# and its minor page faults per 1,000 calls; "cpu ratio" is Health/Check's
# CPU time per call over SelectOffer's, which the throughput ratio follows
# while the server's core is saturated. B=<dir> runs another build's
# offer-bandit. CONFIG=config/bench-k12-d64.toml
# CAMPAIGN=bench-k12-d64 for the contextual campaign; SKIP_BUILD=1 reuses
# target/release. Server on core 0, h2load on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
B="${B:-target/release}"
PASSES="${PASSES:-3}"
N="${N:-200000}"
CAMPAIGN="${CAMPAIGN:-coffee}"
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p offer-bandit
source benches/pinned_server.sh
python3 benches/grpc_bodies.py "$CAMPAIGN" "$W"
extra=()
[ -z "${CONFIG:-}" ] || extra+=(--config "$CONFIG")

rate() { # rate N PATH BODY -> calls per second; exits unless every call succeeded
  local out ok data
  out=$(taskset -c 1 h2load -n "$1" -c 16 -m 16 -t 1 -d "$3" -H "content-type: application/grpc" \
    -H "te: trailers" "http://$ADDR$2")
  ok=$(echo "$out" | awk '/^requests:/ { print $8 }')
  # A reply's message carries at least its 5-byte gRPC frame header as DATA.
  data=$(echo "$out" | sed -n 's/^traffic: .*, [^ ]* (\([0-9]*\)) data.*/\1/p')
  if [ "${ok:-0}" != "$1" ] || [ "${data:-0}" -lt $((5 * $1)) ]; then
    echo "$out" >&2
    echo "$2: $ok of $1 calls succeeded, $data bytes of replies (gRPC errors?)" >&2
    exit 1
  fi
  echo "$out" | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p'
}

usage() { # the server's minor faults, CPU ticks (user + system) and system ticks
  awk '{ print $10, $14 + $15, $15 }' "/proc/$PID/stat"
}

start_pinned "${extra[@]}" "$@"
rate 30000 /offerbandit.v1.OfferService/SelectOffer "$W/select.bin" >/dev/null
tick_ns=$((1000000000 / $(getconf CLK_TCK)))
for _ in $(seq "$PASSES"); do
  read -r f0 c0 y0 < <(usage)
  s=$(rate "$N" /offerbandit.v1.OfferService/SelectOffer "$W/select.bin")
  read -r f1 c1 y1 < <(usage)
  h=$(rate "$N" /grpc.health.v1.Health/Check "$W/health.bin")
  read -r _ c2 _ < <(usage)
  awk -v s="$s" -v h="$h" -v n="$N" -v t="$tick_ns" -v sc=$((c1 - c0)) -v sy=$((y1 - y0)) \
    -v sf=$((f1 - f0)) -v hc=$((c2 - c1)) 'BEGIN {
      printf "SelectOffer %.0f/s (cpu %.0f ns/call, sys %.0f ns, %.0f faults/1000), ", s, sc * t / n, sy * t / n, sf * 1000 / n
      printf "Health/Check %.0f/s (cpu %.0f ns/call), cpu ratio %.3f, ratio %.3f\n", h, hc * t / n, (sc > 0 ? hc / sc : 0), s / h }'
done
stop_pinned
