#!/usr/bin/env bash
# SelectOffer against Health/Check over plaintext and over TLS, with the
# socket writes each SelectOffer costs (BENCHMARKS.md, "Replies in one
# write"): h2load (200,000 requests, 16 connections x 16 streams, one
# request body), server pinned to core 0, h2load to core 1, a fresh server
# and a throwaway self-signed certificate (openssl) for each line.
#
#   benches/tls_writes.sh                 # run from the project root
#   SKIP_BUILD=1 benches/tls_writes.sh /path/to/other/offer-bandit ...
#
# The request is run.sh's with four features the demo campaign does not
# declare (grpc_bodies.py's EXTRA=1): the reply names them, which takes it
# past 256 bytes, the size from which h2 sends a payload apart from its
# trailers unless the stream says it takes no vectored writes. SMALL=1 uses
# run.sh's request as it is. Writes are the server's write, writev and
# sendto system calls while SelectOffer runs (perf stat; "n/a" without
# perf), divided by the requests.
set -euo pipefail
N="${N:-200000}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p offer-bandit
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/offer-bandit)
for tool in h2load openssl; do
  command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install nghttp2-client openssl" >&2; exit 1; }
done
. "$(dirname "$0")/pinned_server.sh"
if [ -n "${SMALL:-}" ]; then
  python3 "$(dirname "$0")/grpc_bodies.py" coffee "$W"
else
  EXTRA=1 python3 "$(dirname "$0")/grpc_bodies.py" coffee "$W"
fi
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/key.pem" -out "$W/cert.pem" -days 1 \
  -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null

rps() { # rps SCHEME N BODY PATH -> requests per second
  taskset -c 1 h2load -n "$2" -c 16 -m 16 -t 1 -d "$3" -H "content-type: application/grpc" \
    -H "te: trailers" "$1://$ADDR$4" | sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p'
}

for bin in "${bins[@]}"; do
  # start_pinned runs $B/offer-bandit.
  [ "$(basename "$bin")" = offer-bandit ] || { echo "$bin: not an offer-bandit binary" >&2; exit 1; }
  B="$(dirname "$bin")"
  for mode in plain tls; do
    tls=()
    scheme=http
    if [ "$mode" = tls ]; then
      tls=(--tls-cert "$W/cert.pem" --tls-key "$W/key.pem")
      scheme=https
    fi
    start_pinned "${tls[@]}"
    rps "$scheme" 20000 "$W/health.bin" /grpc.health.v1.Health/Check >/dev/null
    rps "$scheme" 20000 "$W/select.bin" /offerbandit.v1.OfferService/SelectOffer >/dev/null
    writes="n/a"
    if command -v perf >/dev/null; then
      perf stat -x, -e 'syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto' \
        -p "$PID" -o "$W/perf" &
      PERF=$!
      sleep 0.3
    fi
    select=$(rps "$scheme" "$N" "$W/select.bin" /offerbandit.v1.OfferService/SelectOffer)
    if command -v perf >/dev/null; then
      kill -INT "$PERF" 2>/dev/null || true
      wait "$PERF" 2>/dev/null || true
      writes=$(awk -F, -v n="$N" '/sys_enter/ {s += $1} END {printf "%.2f", s / n}' "$W/perf")
    fi
    health=$(rps "$scheme" "$N" "$W/health.bin" /grpc.health.v1.Health/Check)
    stop_pinned
    awk -v b="$bin" -v m="$mode" -v s="$select" -v h="$health" -v w="$writes" \
      'BEGIN {printf "%s %s: SelectOffer %.0f/s, Health/Check %.0f/s, ratio %.2f, writes per SelectOffer %s\n", b, m, s, h, s / h, w}'
  done
done
