#!/usr/bin/env bash
# SelectOffer against Health/Check with `offer-sim load` (varied contexts:
# the coffee-loyalty scenario's customers, redemptions flowing back), then
# SelectOffer's latency at half of its maximum throughput (BENCHMARKS.md,
# "`offer-sim load`: varied customers").
#
#   benches/select_latency.sh            # run from the project root
#
# Server pinned to core 0, load generator to core 1, 32 callers. For each of
# RUNS (default 2) server starts: Health/Check at full speed, SelectOffer at
# full speed (its maximum), then SelectOffer at half that maximum (--rps),
# DURATION (default 10s) each. Prints one line per measurement: rpc, calls
# per second, p50/p99/p99.9 in microseconds, errors, and the cores the load
# generator kept busy (near 1.00 the rate would be the client's limit, not
# the server's); then the run's ratio, SelectOffer's maximum over
# Health/Check's.
# CONFIG=config/bench-k12-d64.toml CAMPAIGN=bench-k12-d64 for the contextual
# campaign (its scenario: SCENARIO=simulator/scenarios/cold-start.toml).
# TLS=1 serves and loads over TLS (a throwaway self-signed certificate,
# openssl). B is the server's directory; SIM the load generator
# (default $B/offer-sim: set it to compare servers older than the load
# generator's TLS, d8a4a00). SKIP_BUILD=1 reuses target/release.
set -euo pipefail
B="${B:-target/release}"
SIM="${SIM:-$B/offer-sim}"
RUNS="${RUNS:-2}"
DURATION="${DURATION:-10s}"
CAMPAIGN="${CAMPAIGN:-coffee}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p offer-bandit -p offer-sim
. "$(dirname "$0")/pinned_server.sh"
extra=()
[ -z "${CONFIG:-}" ] || extra+=(--config "$CONFIG")
scenario=()
[ -z "${SCENARIO:-}" ] || scenario+=(--scenario "$SCENARIO")
scheme=http
tls=()
if [ -n "${TLS:-}" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/key.pem" -out "$W/cert.pem" -days 1 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
    -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null
  extra+=(--tls-cert "$W/cert.pem" --tls-key "$W/key.pem")
  scheme=https
  tls=(--ca-cert "$W/cert.pem" --tls-domain localhost)
fi
load() { # load ARGS... -> "rpc per_second p50 p99 p999 errors" for the first RPC
  taskset -c 1 "$SIM" load --target "$scheme://$ADDR" "${tls[@]}" --concurrency 32 \
    --duration "$DURATION" --json "$@" 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin); r=j["rpcs"][0]; print(r["rpc"], round(r["per_second"]), r["p50_us"], r["p99_us"], r.get("p999_us"), r["errors"] or 0, "client " + ("%.2f" % j["client_cores_busy"] if j.get("client_cores_busy") is not None else "n/a"))'
}
for run in $(seq 1 "$RUNS"); do
  start_pinned "${extra[@]}"
  health=$(load --rpc health)
  echo "run $run: $health"
  full=$(load --campaign "$CAMPAIGN" "${scenario[@]}")
  echo "run $run: $full"
  awk -v r="$run" -v h="$(echo "$health" | awk '{print $2}')" -v s="$(echo "$full" | awk '{print $2}')" \
    'BEGIN { if (h > 0) printf "run %s: ratio SelectOffer / Health/Check %.3f\n", r, s / h }'
  half=$(( $(echo "$full" | awk '{print $2}') / 2 ))
  echo "run $run: at half ($half/s): $(load --campaign "$CAMPAIGN" "${scenario[@]}" --rps "$half")"
  stop_pinned
done
