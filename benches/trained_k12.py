"""bench-k12-d64's SelectOffer/Health/Check ratio after training, measured as
`../shared/bench/run.sh` measures it (h2load, server on core 0, h2load on core 1,
Health/Check and SelectOffer twice each, the same request body), on a server that
first made TRAIN decisions (default 20,000) for varied customers and got
redemptions back: its twelve arms have learned and differ, as in use. run.sh
starts from an empty store, where every arm is still its prior (BENCHMARKS.md,
"SelectOffer against Health/Check (issue 19)").

    SKIP_BUILD=1 ~/.cache/offer-bandit-bench-venv/bin/python benches/trained_k12.py
    TRAIN=0 ...   # the same, untrained (what run.sh measures)

Needs run.sh's helpers (../shared/bench: ob.py, select_ratio.py) and its venv.
"""
import os
import random
import sys

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("PROJECT", PROJECT)
sys.path.insert(0, os.environ.get("SHARED_BENCH", os.path.join(PROJECT, "..", "shared", "bench")))
import ob  # noqa: E402
import select_ratio as sr  # noqa: E402

TRAIN = int(os.environ.get("TRAIN", "20000"))
CAMPAIGN = "bench-k12-d64"
CATEGORY = {"coffee_10pct": "coffee", "coffee_bogo": "coffee", "bakery_20pct": "bakery",
            "free_cookie": "bakery", "drinks_25pct": "drinks", "smoothie_bogo": "drinks",
            "snacks_bogo": "snacks", "chips_free": "snacks"}


def redemption_rate(offer, ctx):
    """Customers redeem offers of their favourite category (25%), gold members
    triple points (35%), anything else rarely (3%)."""
    if offer == "triple_points_gold" and ctx["tier"] == "gold":
        return 0.35
    return 0.25 if CATEGORY.get(offer) == ctx["favorite_category"] else 0.03


def main():
    ob.protos()
    s = ob.Server(ob.build(), config=os.path.join(PROJECT, "config", "bench-k12-d64.toml"),
                  prefix=["taskset", "-c", "0"]).start()
    stub = s.stub("OfferService")
    rng = random.Random(7)
    redeemed = 0
    for _ in range(TRAIN):
        ctx = {"favorite_category": rng.choice(["bakery", "coffee", "drinks", "snacks"]),
               "hour": rng.randrange(24), "tier": rng.choice(["bronze", "gold", "silver"]),
               "region": "r%02d" % rng.randint(1, 14), "app_user": rng.random() < 0.5,
               "store_id": "s-%d" % rng.randrange(50)}
        r = stub.SelectOffer(ob.select_req(CAMPAIGN, ctx))
        if rng.random() < redemption_rate(r.offer_id, ctx):
            stub.RecordRedemption(ob.redeem_req(r.decision_id))
            redeemed += 1
    # run.sh's request and Health/Check, timed alike.
    req = ob.select_req(CAMPAIGN, {"lifecycle": "active", "hour": 15, "channel": "app", "spend_tier": "mid",
                                   "store_id": "s-1042", "app_user": True, "region": "west",
                                   "favorite_category": "coffee", "tier": "gold"})
    from grpc_health.v1 import health_pb2
    hb, sb = sr.frame(health_pb2.HealthCheckRequest()), sr.frame(req)
    h1 = sr.h2load(s.addr, "/grpc.health.v1.Health/Check", hb)
    s1 = sr.h2load(s.addr, "/offerbandit.v1.OfferService/SelectOffer", sb)
    h2 = sr.h2load(s.addr, "/grpc.health.v1.Health/Check", hb)
    s2 = sr.h2load(s.addr, "/offerbandit.v1.OfferService/SelectOffer", sb)
    s.stop()
    print(f"trained on {TRAIN} decisions ({redeemed} redeemed): Health/Check {h1[0]:.0f}/{h2[0]:.0f}/s, "
          f"SelectOffer {s1[0]:.0f}/{s2[0]:.0f}/s, ratio {(s1[0] + s2[0]) / (h1[0] + h2[0]):.2f}")


if __name__ == "__main__":
    main()
