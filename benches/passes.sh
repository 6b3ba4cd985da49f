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
# SelectOffer/s, Health/Check/s and their ratio. CONFIG=config/bench-k12-d64.toml
# CAMPAIGN=bench-k12-d64 for the contextual campaign; SKIP_BUILD=1 reuses
# target/release. Server on core 0, h2load on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
B=target/release
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

start_pinned "${extra[@]}" "$@"
rate 30000 /offerbandit.v1.OfferService/SelectOffer "$W/select.bin" >/dev/null
for _ in $(seq "$PASSES"); do
  s=$(rate "$N" /offerbandit.v1.OfferService/SelectOffer "$W/select.bin")
  h=$(rate "$N" /grpc.health.v1.Health/Check "$W/health.bin")
  awk -v s="$s" -v h="$h" 'BEGIN { printf "SelectOffer %.0f/s, Health/Check %.0f/s, ratio %.3f\n", s, h, s / h }'
done
stop_pinned
