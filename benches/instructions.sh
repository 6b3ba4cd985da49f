#!/usr/bin/env bash
# Instructions per call, counted by valgrind's callgrind: SelectOffer and
# Health/Check on the same server, and what SelectOffer's share goes to
# (BENCHMARKS.md, "Instructions per call"). Unlike throughput, an
# instruction count barely moves with the other work on a shared VM, so it
# can tell a 3% change apart; it does not see cache misses, lock waits or
# system calls, so throughput (run.sh) stays the figure the targets name.
#
#   benches/instructions.sh          # run from the project root
#
# The server runs under callgrind with instrumentation off until it has
# served a warm-up of 500 calls; then N calls (default 5000; h2load, 16
# connections x 16 streams, one request body) are counted, and nothing
# else. The writer's interval is LEARN_INTERVAL (default 100ms): callgrind
# slows the server about 50 times, and at the default 5 ms its write groups
# would hold a tenth of the decisions they hold at full speed, which
# inflates every per-group cost (for the same reason the counts rise when
# other work slows the server: compare builds in alternation). CONFIG=config/bench-k12-d64.toml
# CAMPAIGN=bench-k12-d64 for the contextual campaign; BIN=path/to/offer-bandit
# to count another build, KEEP=dir to keep the two profiles (callgrind_annotate
# reads them). FEATURES=lifecycle,hour sends only those context features
# (benches/grpc_bodies.py). SKIP_BUILD=1 reuses target/release.
# SIM_LOAD=1 drives the server with `offer-sim load` instead (SIM_BIN,
# default target/release/offer-sim): an untimed 2 s warm-up, then 32
# callers for SIM_DURATION (default 20s) of the scenario's varied
# customers, with redemptions flowing back (SCENARIO=path for another
# scenario). The instructions are divided by the calls that succeeded, so a
# SelectOffer's count includes its share of the redemptions' work, as
# `offer-sim load`'s throughput does. Redemption delays run on the wall
# clock, so that share depends on SIM_DURATION: compare builds at the same
# duration, in alternation.
set -euo pipefail
BIN="${BIN:-target/release/offer-bandit}"
N="${N:-5000}"
CAMPAIGN="${CAMPAIGN:-coffee}"
LEARN_INTERVAL="${LEARN_INTERVAL:-100ms}"
SIM_LOAD="${SIM_LOAD:-}"
SIM_BIN="${SIM_BIN:-target/release/offer-sim}"
for tool in valgrind callgrind_control callgrind_annotate h2load; do
  command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install valgrind nghttp2-client" >&2; exit 1; }
done
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p offer-bandit
  [ -z "$SIM_LOAD" ] || cargo build --release -p offer-sim
fi
[ -z "$SIM_LOAD" ] || [ -x "$SIM_BIN" ] || { echo "$SIM_BIN missing: cargo build --release -p offer-sim" >&2; exit 1; }
W="$(mktemp -d)"
PID=""
KEEP="${KEEP:-}"
trap '[ -z "$PID" ] || kill "$PID" 2>/dev/null || true; rm -rf "$W"' EXIT
python3 "$(dirname "$0")/grpc_bodies.py" "$CAMPAIGN" "$W"
extra=()
[ -z "${CONFIG:-}" ] || extra+=(--config "$CONFIG")

h2() { # h2 N PATH BODY
  h2load -n "$1" -c 16 -m 16 -t 1 -d "$3" -H "content-type: application/grpc" \
    -H "te: trailers" "http://$ADDR$2" | grep -E '^requests:'
}

count() { # count NAME PATH BODY -> instructions per call, and the profile in $W/NAME.out
  rm -rf "$W/data"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$W/$1.out" \
    "$BIN" serve --listen 127.0.0.1:0 --no-metrics --data-dir "$W/data" \
    --learn-interval "$LEARN_INTERVAL" "${extra[@]}" >"$W/log" 2>&1 &
  PID=$!
  ADDR=""
  for _ in $(seq 600); do
    ADDR=$(sed -n 's/^offer-bandit listening on //p' "$W/log")
    [ -z "$ADDR" ] || break
    sleep 0.2
  done
  [ -n "$ADDR" ] || { cat "$W/log" >&2; kill "$PID"; exit 1; }
  local calls="$N"
  if [ -n "$SIM_LOAD" ]; then
    sim 2s "$2" >/dev/null || true
    callgrind_control -i on "$PID" >/dev/null 2>&1
    calls=$(sim "${SIM_DURATION:-20s}" "$2") || true
    callgrind_control -i off "$PID" >/dev/null 2>&1
    if ! [[ $calls =~ ^[1-9][0-9]*$ ]]; then
      echo "offer-sim load made no calls ($2):" >&2
      cat "$W/sim.log" >&2
      kill "$PID"
      exit 1
    fi
    echo "offer-sim load: $calls calls that succeeded ($2)" >&2
  else
    h2 500 "$2" "$3" >/dev/null
    callgrind_control -i on "$PID" >/dev/null 2>&1
    h2 "$N" "$2" "$3" >&2
    callgrind_control -i off "$PID" >/dev/null 2>&1
  fi
  echo "$calls" >"$W/$1.calls"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  callgrind_annotate "$W/$1.out" 2>/dev/null |
    awk -v n="$calls" '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); printf "%.0f\n", $1 / n; done = 1 }'
}

sim() { # sim DURATION PATH -> calls of the first RPC that succeeded (`offer-sim load`, 32 callers)
  local rpc=(--campaign "$CAMPAIGN")
  [ -z "${SCENARIO:-}" ] || rpc+=(--scenario "$SCENARIO")
  [ "$2" != /grpc.health.v1.Health/Check ] || rpc=(--rpc health)
  "$SIM_BIN" load --target "http://$ADDR" --concurrency 32 --duration "$1" --json "${rpc[@]}" 2>"$W/sim.log" |
    python3 -c '
import json, sys
r = json.load(sys.stdin)["rpcs"][0]
if r["errors"]:
    print("offer-sim load: errors %s" % r["errors"], file=sys.stderr)
print(r["ok"])'
}

select_ir=$(count select /offerbandit.v1.OfferService/SelectOffer "$W/select.bin")
health_ir=$(count health /grpc.health.v1.Health/Check "$W/health.bin")
select_calls=$(cat "$W/select.calls")
echo "campaign $CAMPAIGN, $select_calls SelectOffers and $(cat "$W/health.calls") Health/Checks counted ($([ -n "$SIM_LOAD" ] && echo "offer-sim load" || echo h2load)), --learn-interval $LEARN_INTERVAL"
echo "instructions per call: SelectOffer $select_ir, Health/Check $health_ir, ratio $(awk -v s="$select_ir" -v h="$health_ir" 'BEGIN { printf "%.2f", h / s }')"
[ -z "$KEEP" ] || cp "$W/select.out" "$W/health.out" "$KEEP"/
echo "SelectOffer's parts (inclusive instructions per call):"
callgrind_annotate --inclusive=yes "$W/select.out" 2>/dev/null | awk -v n="$select_calls" '
  # The first (largest) line naming each part; plain substrings, no regex.
  function part(name, text) { if (index($0, text) && !(name in seen)) { gsub(",", "", $1); seen[name] = $1 / n; order[++k] = name } }
  { part("decoding the request", "codec.rs:<offer_bandit::codec::ProtoDecoder<U> as tonic::codec::Decoder>::decode")
    part("the handler (validation, the draw, the reply)", "OfferService>::select_offer::{{closure}}")
    part("the writer thread (staging, learning, the store)", "offer_bandit::engine::writer::Writer::run")
    part("  of which the store commit", "store/mod.rs:offer_bandit::store::Store::commit")
    part("encoding the reply", "<tonic::codec::encode::EncodeBody<T,U> as http_body::Body>::poll_frame") }
  END { for (i = 1; i <= k; i++) printf "  %-52s %8.0f\n", order[i], seen[order[i]] }'
