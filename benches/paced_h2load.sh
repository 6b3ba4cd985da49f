#!/usr/bin/env bash
# SelectOffer's latency at half of its maximum throughput, measured with
# h2load (nghttp2-client, a client nobody here wrote) rather than our own
# load generator (BENCHMARKS.md, "Latency at half of the maximum").
#
#   benches/paced_h2load.sh              # run from the project root
#
# Server pinned to core 0, h2load to core 1, 32 callers (32 connections, one
# stream each). For each of RUNS (default 2) server starts: SelectOffer at
# full speed (its maximum with 32 callers), then SelectOffer paced at half
# that (--rps per connection) for DURATION seconds (default 10), then
# Health/Check paced at the same rate (what the stack and client add). The
# latencies come from h2load's --log-file (one line per request); prints
# rpc, calls per second, p50/p99/p99.9 in microseconds, failed streams,
# and, from the server's own offer_bandit_rpc_duration_seconds histogram
# over the paced run, the share of calls it finished within 1 ms and
# 2.5 ms (measured from the call reaching our service to its reply: the
# part of the latency that is the server's, not the client's or the
# socket's).
# CONFIG=config/bench-k12-d64.toml CAMPAIGN=bench-k12-d64 for the contextual
# campaign. SKIP_BUILD=1 reuses target/release.
set -euo pipefail
B="${B:-target/release}"
RUNS="${RUNS:-2}"
DURATION="${DURATION:-10}"
CAMPAIGN="${CAMPAIGN:-coffee}"
CALLERS=32
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p offer-bandit
METRICS=1
. "$(dirname "$0")/pinned_server.sh"
extra=()
[ -z "${CONFIG:-}" ] || extra+=(--config "$CONFIG")

python3 "$(dirname "$0")/grpc_bodies.py" "$CAMPAIGN" "$W"

h2() { # h2 PATH BODY ARGS... -> h2load's summary; per-request lines in $W/lat
  rm -f "$W/lat"
  taskset -c 1 h2load -c "$CALLERS" -m 1 -t 1 -d "$2" --log-file="$W/lat" \
    -H "content-type: application/grpc" -H "te: trailers" "${@:3}" "http://$ADDR$1"
}
percentiles() { # RPC RATE -> "rpc per_second p50 p99 p999 failed"
  awk -v rpc="$1" -v rate="$2" '{ if ($2 == 200) print $3; else bad++ }
    END { print "failed", bad + 0 > "/dev/stderr" }' "$W/lat" 2>"$W/bad" | sort -n >"$W/sorted"
  n=$(wc -l <"$W/sorted")
  q() { sed -n "$(( ($1 * n + 999) / 1000 ))p" "$W/sorted"; }
  echo "$1 $2/s p50 $(q 500)us p99 $(q 990)us p99.9 $(q 999)us $(cat "$W/bad")"
}
server_side() { # PATH BEFORE AFTER -> "within 1 ms X%, within 2.5 ms Y%"
  python3 - "$@" <<'PY'
import re, sys
method, before, after = sys.argv[1], sys.argv[2], sys.argv[3]
def buckets(text):
    out = {}
    for m in re.finditer(r'offer_bandit_rpc_duration_seconds_bucket\{([^}]*)\} (\S+)', text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("method") == method:
            out[labels["le"]] = float(m.group(2))
    return out
b, a = buckets(open(before).read()), buckets(open(after).read())
d = {le: a[le] - b.get(le, 0.0) for le in a}
n = d.get("+Inf", 0.0)
share = lambda le: 100.0 * d.get(le, 0.0) / n if n else float("nan")
print(f"server-side: within 1 ms {share('0.001'):.2f}%, within 2.5 ms {share('0.0025'):.2f}%")
PY
}
for run in $(seq 1 "$RUNS"); do
  start_pinned "${extra[@]}"
  select=/offerbandit.v1.OfferService/SelectOffer
  max=$(h2 "$select" "$W/select.bin" -n 100000 | awk '/^finished in/ {print int($4)}')
  echo "run $run: SelectOffer maximum with $CALLERS callers: $max/s"
  per=$(( max / 2 / CALLERS ))
  curl -s "http://$MADDR/metrics" >"$W/before"
  h2 "$select" "$W/select.bin" --rps "$per" -D "$DURATION" >/dev/null
  curl -s "http://$MADDR/metrics" >"$W/after"
  echo "run $run: $(percentiles SelectOffer $(( per * CALLERS ))); $(server_side "$select" "$W/before" "$W/after")"
  h2 /grpc.health.v1.Health/Check "$W/health.bin" --rps "$per" -D "$DURATION" >/dev/null
  echo "run $run: $(percentiles Health/Check $(( per * CALLERS )))"
  stop_pinned
done
