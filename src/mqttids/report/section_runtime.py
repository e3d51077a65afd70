"""The alerts and benchmarks sections."""

from __future__ import annotations

import json

from mqttids.report import plots
from mqttids.report.alerts import sort_latest
from mqttids.report.benchmarks import Block, Section
from mqttids.report.html import Safe, code_spans, img, join, number, table, tag
from mqttids.report.inputs import ReportInputs
from mqttids.report.section_data import missing

ALERTS_COMMAND = ("mqttids detect SOURCE --model NAME --alerts FILE, then "
                  "mqttids report -o DIR --alerts FILE")


def _endpoint(host, port) -> str:
    if host is None:
        return "?"
    host = f"[{host}]" if ":" in str(host) else str(host)
    return host if port is None else f"{host}:{port}"


def alerts_section(inputs: ReportInputs) -> Safe:
    s = inputs.alerts
    parts = []
    if s.sources:
        parts.append(tag("p", "From " + ", ".join(s.sources) + ".", cls="small"))
    if s.skipped:
        parts.append(tag("p", f"{s.skipped:,} records were not alerts (no time or label) and "
                              "were left out.", cls="missing"))
    if not s.total:
        if s.sources:
            return join(parts + [tag("p", "The detector raised no alerts.")])
        return missing("alerts", ALERTS_COMMAND)
    parts += [img(plots.alerts_over_time(s.times, s.labels), "alerts over time per class"),
              tag("h3", f"{s.total:,} alerts by class"),
              table(["class", "alerts"], [[k, number(v)] for k, v in s.by_label.most_common()],
                    numeric=(1,)),
              tag("h3", "Client ids with most alerts"),
              table(["class", "client id", "alerts"],
                    [[label, tag("span", client, cls="wire client-id"), number(n)]
                     for label, client, n in s.top_clients()], numeric=(2,)),
              tag("h3", f"Latest {len(s.latest)} alerts"),
              latest_table(sort_latest(s))]
    return join(parts)


def latest_table(alerts: list[dict]) -> Safe:
    body = []
    for a in alerts:
        evidence = a.get("evidence")
        evidence = evidence if isinstance(evidence, str) else json.dumps(evidence, default=str)
        score = a.get("score")
        body.append([tag("span", a["time"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], cls="nowrap"),
                     a.get("label"),
                     number(score if isinstance(score, float) else None),
                     tag("span", a.get("client_id"), cls="wire client-id"),
                     f"{_endpoint(a.get('src'), a.get('sport'))} → "
                     f"{_endpoint(a.get('dst'), a.get('dport'))}",
                     tag("span", evidence, cls="wire small")])
    return table(["time (UTC)", "class", "score", "client id", "connection", "evidence"], body,
                 numeric=(2,))


def benchmarks_section(inputs: ReportInputs) -> Safe:
    if not inputs.benchmarks:
        return missing("benchmark figures (docs/benchmarks.md)",
                       "make bench, and record the figures in docs/benchmarks.md")
    parts = [tag("p", f"From {inputs.benchmarks_source}.", cls="small")]
    for section in inputs.benchmarks:
        parts.append(benchmark_part(section))
    return join(parts)


def benchmark_part(section: Section) -> Safe:
    parts = []
    if section.title and section.level >= 2:
        parts.append(tag("h3" if section.level == 2 else "h4", code_spans(section.title)))
    for block in section.blocks:
        parts.append(_block(block))
    return join(parts)


def _block(block: Block) -> Safe:
    if block.kind == "table":
        numeric = tuple(i for i in range(len(block.header))
                        if block.rows and all(_looks_numeric(r[i]) for r in block.rows))
        return table([code_spans(h) for h in block.header],
                     [[code_spans(c) for c in r] for r in block.rows], numeric=numeric)
    if block.kind == "list":
        return tag("ul", *(tag("li", code_spans(item)) for item in block.lines))
    if block.kind == "code":
        return tag("pre", "\n".join(block.lines))
    return tag("p", code_spans(" ".join(block.lines)))


def _looks_numeric(text: str) -> bool:
    t = text.replace(",", "").replace("%", "").replace(" ", "").strip()
    try:
        float(t)
        return True
    except ValueError:
        return False
