"""Request bodies for the h2load benchmarks, as gRPC frames (a 0 byte, the
length, the message), protobuf written by hand so that no generated code
is needed: SelectOfferRequest {campaign = 1, context = 2 (map<string,
FeatureValue{number 1, category 2, flag 3}>)} with the nine-feature context
the demo's coffee customers send, and an empty HealthCheckRequest.

    python3 benches/grpc_bodies.py CAMPAIGN DIR   # writes DIR/select.bin, DIR/health.bin

FEATURES=lifecycle,hour keeps only the features named (what the context's
size costs: BENCHMARKS.md, "Instructions per call"). EXTRA=1 adds four
features no demo campaign declares (device, visit_count, locale, weather):
the reply names the features it ignored, which takes it past 256 bytes, as
the offer-sim scenarios' replies are (BENCHMARKS.md, "Replies in one
write").
"""
import os, struct, sys
def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])
def field(num, wire, payload):
    tag = varint(num << 3 | wire)
    return tag + (varint(len(payload)) + payload if wire == 2 else payload)
def value(v):
    if isinstance(v, bool): return field(3, 0, varint(int(v)))
    if isinstance(v, (int, float)): return field(1, 1, struct.pack("<d", float(v)))
    return field(2, 2, v.encode())
context = {"lifecycle": "active", "hour": 15, "channel": "app", "spend_tier": "mid",
           "store_id": "s-1042", "app_user": True, "region": "west",
           "favorite_category": "coffee", "tier": "gold"}
if os.environ.get("FEATURES"):
    kept = os.environ["FEATURES"].split(",")
    context = {k: v for k, v in context.items() if k in kept}
if os.environ.get("EXTRA"):
    context.update({"device": "ios", "visit_count": 12, "locale": "en-US", "weather": "sunny"})
msg = field(1, 2, sys.argv[1].encode())
for k, v in context.items():
    msg += field(2, 2, field(1, 2, k.encode()) + field(2, 2, value(v)))
open(sys.argv[2] + "/select.bin", "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
open(sys.argv[2] + "/health.bin", "wb").write(b"\0" + struct.pack(">I", 0))
