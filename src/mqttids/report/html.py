"""Small HTML builders that escape every value unless it is marked as built here.

Client ids, topics, payloads and will messages come off the wire and are
attacker-controlled; so are file names. Every value goes through
:func:`esc` on its way into the page; only strings these builders made
themselves are wrapped in :class:`Safe` and pass through as they are.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence


VOID = frozenset({"br", "hr", "img", "meta", "link", "col", "wbr"})


class Safe(str):
    """HTML made by this module (its parts already escaped)."""


def esc(value) -> Safe:
    """``value`` as HTML text: Safe passes through, None is empty, the rest is escaped."""
    if isinstance(value, Safe):
        return value
    if value is None:
        return Safe("")
    return Safe(html.escape(str(value), quote=True))


def join(parts: Iterable) -> Safe:
    return Safe("".join(esc(p) for p in parts))


def tag(name: str, *children, **attrs) -> Safe:
    """``<name attrs>children</name>``; attribute names use ``_`` for ``-`` and ``cls``."""
    text = "".join(f' {_attr(k)}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    if name in VOID:
        return Safe(f"<{name}{text}>")
    return Safe(f"<{name}{text}>{join(children)}</{name}>")


def _attr(key: str) -> str:
    return "class" if key == "cls" else key.rstrip("_").replace("_", "-")


def img(uri: str, alt: str) -> Safe:
    """An embedded plot; ``uri`` must be a data URI made by mqttids.report.plots."""
    if not uri.startswith("data:image/"):
        raise ValueError(f"plots are embedded as data URIs, got {uri[:30]!r}")
    return Safe(f'<img src="{esc(uri)}" alt="{esc(alt)}">')


def number(value, digits: int = 4) -> str:
    """Integers with thousands separators, floats to ``digits`` places, '-' for nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if math.isfinite(value) else str(value)
    return str(value)


def table(header: Sequence, rows: Iterable[Sequence], numeric: Sequence[int] = (),
          cls: str | None = None) -> Safe:
    """A table; columns whose index is in ``numeric`` are right-aligned."""
    head = tag("tr", *(tag("th", h) for h in header))
    body = [tag("tr", *(tag("td", c, cls="num" if i in numeric else None)
                        for i, c in enumerate(r))) for r in rows]
    return tag("table", tag("thead", head), tag("tbody", *body), cls=cls)


def code_spans(text: str) -> Safe:
    """Markdown text with `code` spans, escaped, the spans as <code>."""
    parts = re.split(r"`([^`]*)`", text)
    return join(tag("code", p) if i % 2 else esc(p) for i, p in enumerate(parts))
