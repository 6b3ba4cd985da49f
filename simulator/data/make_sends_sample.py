#!/usr/bin/env python3
"""Writes sends_sample.csv: a synthetic history of a coffee chain's sends,
the kind of CSV `offer-sim history` reads. Known truth, so the verdict can be
checked: BOGO redeems at 20% after 2pm and 4% before; win-back at 25% for
tier-c members and 3% otherwise; double points at 8%; each member redeems
at half or one and a half times those rates. The team's rule ("BOGO after
2pm, points otherwise", simulator/rules/sends-today.rules) made 80% of the
sends; a random offer went out on the other 20%. Not real customers.

    python3 simulator/data/make_sends_sample.py > simulator/data/sends_sample.csv
"""
import random

random.seed(2026)
OFFERS = ["bogo", "points", "winback"]
VALUES = [3.5, 1.5, 4.0]


def rate(tier, hour, offer, lift):
    p = {
        "bogo": 0.20 if hour >= 14 else 0.04,
        "winback": 0.25 if tier == "c" else 0.03,
        "points": 0.08,
    }[OFFERS[offer]]
    return min(p * lift, 1.0)


print("customer_id,sent_at,tier,hour,offer,redeemed,value")
for c in range(4000):
    tier = random.choice("abc")
    lift = random.choice([0.5, 1.5])
    for day in range(3):
        hour = random.randrange(6, 22)
        if random.random() < 0.2:
            offer = random.randrange(3)
        else:
            offer = 0 if hour >= 14 else 1
        hit = random.random() < rate(tier, hour, offer, lift)
        value = VALUES[offer] if hit else 0
        print(f"m{c:05d},2026-03-{day + 1:02d},{tier},{hour},{OFFERS[offer]},{int(hit)},{value}")
