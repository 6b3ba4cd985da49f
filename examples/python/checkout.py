#!/usr/bin/env python3
"""A checkout service calling offer-bandit: the integration pattern, runnable.

    pip install grpcio grpcio-tools
    python3 examples/python/checkout.py --addr 127.0.0.1:50051

What it shows, in the order a checkout would do it:

1. SelectOffer with a deadline (50 ms) and a request_id, on a channel that
   carries the recommended retry policy (deploy/grpc-service-config.json). A
   retry with the same request_id (same customer) replays the same decision
   instead of making a second one. The reply has the offer's name and display
   attributes: no second lookup.
2. A fallback when offer-bandit is down, slow or out of budget: checkout shows
   its own default offer and carries on; it never blocks the sale. The
   fallback is logged with RecordFallback (same request_id: a retry replays
   it), so the measurement counts it; when offer-bandit is down, that log
   waits in the caller's queue.
3. RecordRedemption, retried on UNAVAILABLE: safe, because each decision's
   redemption counts once (a repeat answers already_recorded).

It prints one JSON object with what happened (tests/integration/examples.rs
runs it against the real server). Stubs are generated from proto/ at start,
so there is nothing to check in.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import uuid

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "proto")
PROTO = "offerbandit/v1/offer_bandit.proto"
SERVICE_CONFIG = os.path.join(HERE, "..", "..", "deploy", "grpc-service-config.json")

# What checkout shows when offer-bandit cannot answer in time.
FALLBACK_OFFER = "double_points"


def load_stubs():
    """Compiles the proto into a temporary package and imports it."""
    out = tempfile.mkdtemp(prefix="offer-bandit-stubs-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(
        [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            os.path.join(PROTO_ROOT, PROTO),
        ]
    )
    if code != 0:
        sys.exit(f"protoc failed on {PROTO}")
    sys.path.insert(0, out)
    from offerbandit.v1 import offer_bandit_pb2, offer_bandit_pb2_grpc

    return offer_bandit_pb2, offer_bandit_pb2_grpc


pb, rpc = load_stubs()


def feature(value):
    """A Python value as the proto's FeatureValue."""
    if isinstance(value, bool):
        return pb.FeatureValue(flag=value)
    if isinstance(value, (int, float)):
        return pb.FeatureValue(number=float(value))
    return pb.FeatureValue(category=str(value))


# Codes after which checkout shows its fallback rather than an error:
# offer-bandit is down, slow, overloaded or out of budget for this campaign.
FALL_BACK_ON = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def select_offer(stub, campaign, customer_id, context, request_id, deadline_s):
    """The offer to show: offer-bandit's choice, or the fallback."""
    request = pb.SelectOfferRequest(
        campaign=campaign,
        customer_id=customer_id,
        request_id=request_id,
        context={k: feature(v) for k, v in context.items()},
    )
    started = time.monotonic()
    try:
        reply = stub.SelectOffer(request, timeout=deadline_s)
    except grpc.RpcError as e:
        code = e.code()
        # gRPC core sometimes reports a call that ran out of its deadline as
        # CANCELLED ("Timeout expired") instead of DEADLINE_EXCEEDED, a known
        # race (googleapis/python-bigtable#1235): to checkout, the same thing.
        if code == grpc.StatusCode.CANCELLED and time.monotonic() - started >= deadline_s:
            code = grpc.StatusCode.DEADLINE_EXCEEDED
        if code in FALL_BACK_ON:
            return {"offer_id": FALLBACK_OFFER, "fallback": code.name}
        # INVALID_ARGUMENT, NOT_FOUND, ...: a bug in the caller; fail loudly.
        raise
    return {
        "offer_id": reply.offer_id,
        "offer_name": reply.offer_name,
        "display": dict(reply.display),
        "decision_id": reply.decision_id,
        "propensity": reply.propensity,
        "arm": reply.arm,
        "replayed": reply.replayed,
        "ignored_features": list(reply.ignored_features),
    }


def record_fallback(stub, campaign, customer_id, context, offer_id, request_id):
    """Logs a fallback impression; None when offer-bandit cannot take it
    now (a real caller keeps it in a queue and retries later)."""
    request = pb.RecordFallbackRequest(
        campaign=campaign,
        offer_id=offer_id,
        customer_id=customer_id,
        request_id=request_id,
        context={k: feature(v) for k, v in context.items()},
    )
    try:
        reply = stub.RecordFallback(request, timeout=2.0)
    except grpc.RpcError as e:
        if e.code() in FALL_BACK_ON:
            return None
        raise
    return {"decision_id": reply.decision_id, "replayed": reply.replayed}


def record_redemption(stub, decision_id, value, attempts=5):
    """Records a redemption; retried on UNAVAILABLE, which is safe."""
    request = pb.RecordRedemptionRequest(decision_id=decision_id, value=value)
    for attempt in range(attempts):
        try:
            # The recommended deadline (docs/errors.md): a feedback
            # pipeline can wait, and a retry is safe.
            reply = stub.RecordRedemption(request, timeout=10.0)
            return {"already_recorded": reply.already_recorded, "offer_id": reply.offer_id}
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or attempt + 1 == attempts:
                raise
            time.sleep(0.1 * 2**attempt)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default="127.0.0.1:50051", help="offer-bandit's gRPC address")
    parser.add_argument("--campaign", default="coffee")
    parser.add_argument("--customer", default="c-1001")
    parser.add_argument("--deadline-ms", type=int, default=50, help="SelectOffer deadline")
    args = parser.parse_args()

    # The recommended retry policy, with SelectOffer's timeout set to our
    # deadline (the config's timeout caps any deadline a call asks for).
    with open(SERVICE_CONFIG) as f:
        service_config = json.load(f)
    for method in service_config["methodConfig"]:
        if any(n.get("method") == "SelectOffer" for n in method["name"]):
            method["timeout"] = f"{args.deadline_ms / 1000:.3f}s"
    channel = grpc.insecure_channel(
        args.addr,
        options=[("grpc.service_config", json.dumps(service_config)), ("grpc.enable_retries", 1)],
    )
    stub = rpc.OfferServiceStub(channel)
    context = {"lifecycle": "lapsing", "daypart": "afternoon", "days_since_last_visit": 41}
    request_id = str(uuid.uuid4())
    deadline = args.deadline_ms / 1000.0

    shown = select_offer(stub, args.campaign, args.customer, context, request_id, deadline)
    result = {"shown": shown}
    if "fallback" in shown:
        result["fallback_logged"] = record_fallback(
            stub, args.campaign, args.customer, context, shown["offer_id"], request_id
        )
    else:
        # The same request retried (say, the first reply was lost): same decision.
        again = select_offer(stub, args.campaign, args.customer, context, request_id, deadline)
        result["retry"] = again
        # The customer redeemed; the feedback pipeline delivers it twice.
        result["redeemed"] = record_redemption(stub, shown["decision_id"], 3.5)
        result["redeemed_again"] = record_redemption(stub, shown["decision_id"], 3.5)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
