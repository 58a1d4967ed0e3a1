#!/usr/bin/env python3
"""Sum up py-spy's collapsed stacks (`py-spy record --format raw`, as bench/profile_tcp.py
writes them): the share of samples per function, by self time and by total (inclusive) time.

    python3 bench/pyspy_top.py FILE [--top N]
"""

from __future__ import annotations

import argparse
import collections
import re


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(args.file) as lines:
        for line in lines:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            total += count
            # "function (file:line)" frames; the line number is dropped so a function is one row
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    print(f"{total} samples")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"\n--- {title} ---")
        for frame, count in counter.most_common(args.top):
            print(f"{100 * count / total:5.1f} %  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
