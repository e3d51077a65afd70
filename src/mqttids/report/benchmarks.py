"""docs/benchmarks.md read into sections of paragraphs, lists and tables.

The benchmark writers keep their figures as Markdown under one ``## `` heading
each; the report shows them as they are, so this reads just enough Markdown
(headings, pipe tables, bullet lists, fenced code, paragraphs) to lay them out
as HTML. Pure: takes the text, returns plain data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+(.*)$")


@dataclass
class Block:
    """One block of a section: kind is 'p', 'list', 'table' or 'code'."""

    kind: str
    lines: list[str] = field(default_factory=list)  # p, code: text lines; list: items
    header: list[str] = field(default_factory=list)  # table only
    rows: list[list[str]] = field(default_factory=list)  # table only


@dataclass
class Section:
    title: str
    level: int
    blocks: list[Block] = field(default_factory=list)


def _cells(line: str) -> list[str]:
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", text)]


def _table(lines: list[str]) -> Block:
    header = _cells(lines[0])
    body = [_cells(line) for line in lines[1:] if not _RULE.match(line)]
    width = len(header)
    rows = [(r + [""] * width)[:width] if len(r) <= width else r[:width - 1] + [" | ".join(
        r[width - 1:])] for r in body]
    return Block("table", header=header, rows=rows)


def _append(section: Section, kind: str, line: str) -> None:
    last = section.blocks[-1] if section.blocks else None
    if last is None or last.kind != kind:
        last = Block(kind)
        section.blocks.append(last)
    last.lines.append(line)


def parse_benchmarks(text: str) -> list[Section]:
    """Sections of a Markdown text, one per heading; text before any heading goes first.

    Tables are runs of lines that start with ``|``; a line that is only a
    heading rule (``|---|---|``) ends the header. Paragraph lines join with a
    space; a blank line ends a paragraph or list.
    """
    sections = [Section("", 0)]
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if heading:
            sections.append(Section(heading.group(2), len(heading.group(1))))
        elif stripped.startswith("```"):
            block = Block("code")
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                block.lines.append(lines[i])
                i += 1
            sections[-1].blocks.append(block)
        elif stripped.startswith("|"):
            start = i
            while i + 1 < len(lines) and lines[i + 1].strip().startswith("|"):
                i += 1
            sections[-1].blocks.append(_table(lines[start:i + 1]))
        elif _BULLET.match(line):
            _append(sections[-1], "list", _BULLET.match(line).group(1))
        elif not stripped:
            sections[-1].blocks.append(Block("break"))
        elif sections[-1].blocks and sections[-1].blocks[-1].kind == "list" and \
                line[:1].isspace():
            items = sections[-1].blocks[-1].lines
            items[-1] = f"{items[-1]} {stripped}"
        else:
            _append(sections[-1], "p", stripped)
        i += 1
    for s in sections:
        s.blocks = [b for b in s.blocks if b.kind != "break"]
    return [s for s in sections if s.title or s.blocks]
