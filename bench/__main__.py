"""Run the benchmarks: `python -m bench [NAME ...]` (default: all of them).

Each bench/bench_NAME.py exposes main(argv) and prints its figures; the
figures worth keeping go into docs/benchmarks.md by hand, with the date.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)])
                   if m.name.startswith("bench_"))
    wanted = argv or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        sys.stderr.write(f"unknown benchmark(s) {unknown}; there are {names}\n")
        return 2
    failed = 0
    for name in wanted:
        sys.stdout.write(f"== bench {name}\n")
        sys.stdout.flush()
        failed |= int(importlib.import_module(f"bench.bench_{name}").main([]) or 0)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
