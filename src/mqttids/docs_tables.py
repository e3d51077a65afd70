"""The README's feature table, made from mqttids.schema so that it cannot drift.

`python -m mqttids.docs_tables README.md` rewrites the table between the
markers; a test fails when the README is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mqttids import schema

BEGIN = "<!-- feature-table:begin -->"
END = "<!-- feature-table:end -->"


def feature_table() -> str:
    lines = ["| # | column | Wireshark title | type | meaning |", "|---|---|---|---|---|"]
    for i, f in enumerate(schema.FEATURES + schema.CONTEXT_FIELDS, 1):
        lines.append(f"| {i} | `{f.name}` | {f.title} | {f.kind} | {f.meaning} |")
    return "\n".join(lines)


def with_table(text: str) -> str:
    """``text`` with the part between the markers replaced by the current table."""
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{feature_table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "README.md")
    path.write_text(with_table(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
