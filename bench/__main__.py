"""Run the benchmarks: `python -m bench [NAME ...]` (default: all of them).

`python -m bench NAME --option ...` runs one benchmark with its own options
(the same as `python -m bench.bench_NAME --option ...`).

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
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    wanted, options = argv[:first_option] or names, argv[first_option:]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        sys.stderr.write(f"unknown benchmark(s) {unknown}; there are {names}\n")
        return 2
    if options and len(wanted) != 1:
        sys.stderr.write(f"options {options} need exactly one benchmark named before them, "
                         f"e.g. python -m bench models {' '.join(options)}\n")
        return 2
    failed = 0
    for name in wanted:
        sys.stdout.write(f"== bench {name}\n")
        sys.stdout.flush()
        failed |= int(importlib.import_module(f"bench.bench_{name}").main(options) or 0)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
