#!/usr/bin/env python3
"""Recovery after a change, from offer-sim's curves.csv (windows of 180 decisions).

Usage: benches/drift_recovery.py CURVES_CSV [CHANGE_AT=18000]

Per policy: reward over the oracle per 1,800 decisions after the change, the
first block at >= 0.90 and the block from which every block stays there, and
the same over a sliding 1,800-decision window (step 180). BENCHMARKS.md's
drift tables come from this.
"""
import collections
import csv
import sys

BLOCK, WINDOWS, GOAL = 1800, 10, 0.90


def main():
    rows = collections.defaultdict(list)
    with open(sys.argv[1]) as f:
        for r in csv.DictReader(f):
            rows[r["policy"]].append(
                (int(r["round"]), float(r["window_expected_reward"]), float(r["window_oracle_reward"]))
            )
    change = int(sys.argv[2]) if len(sys.argv) > 2 else 18000
    for policy, rs in rows.items():
        blocks = collections.defaultdict(lambda: [0.0, 0.0])
        for rnd, e, o in rs:
            if rnd > change:
                b = (rnd - change - 1) // BLOCK
                blocks[b][0] += e
                blocks[b][1] += o
        ratios = [blocks[b][0] / blocks[b][1] for b in sorted(blocks)]
        first = next(((b + 1) * BLOCK for b, r in enumerate(ratios) if r >= GOAL), None)
        stays = next(((b + 1) * BLOCK for b in range(len(ratios)) if all(r >= GOAL for r in ratios[b:])), None)
        post = [x for x in rs if x[0] > change]
        sliding = [
            (post[i][0] - change, sum(x[1] for x in post[i - WINDOWS + 1 : i + 1]) / sum(x[2] for x in post[i - WINDOWS + 1 : i + 1]))
            for i in range(WINDOWS - 1, len(post))
        ]
        slide = next((d for j, (d, _) in enumerate(sliding) if all(r >= GOAL for _, r in sliding[j:])), None)
        print(
            f"{policy}: " + " ".join(f"{r:.2f}" for r in ratios)
            + f" | first >= {GOAL} by {first}; stays from {stays}; sliding window stays from {slide}"
        )


if __name__ == "__main__":
    main()
