"""The report page: one HTML document, plots embedded, no script, nothing fetched.

Built from :class:`mqttids.report.inputs.ReportInputs`; every section says
plainly when its data are missing and which command makes them. The page
carries a Content-Security-Policy that allows no script and no request at
all (images only from data URIs), so even a value that escaped escaping
could not run or call out.
"""

from __future__ import annotations

import datetime as dt

from mqttids import __version__
from mqttids.report.html import Safe, esc, join, table, tag
from mqttids.report.inputs import ReportInputs
from mqttids.report.section_data import data_section
from mqttids.report.section_models import models_section, tuning_section
from mqttids.report.section_runtime import alerts_section, benchmarks_section

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

# (section id, heading, what makes it)
SECTIONS = (
    ("data", "Data: class balance, ceiling and profile", "mqttids analyze"),
    ("models", "Models on test", "mqttids train, then mqttids evaluate"),
    ("tuning", "Cross-validation", "mqttids train"),
    ("alerts", "Alerts", "mqttids detect SOURCE --model NAME --alerts FILE, then "
                         "mqttids report -o DIR --alerts FILE"),
    ("benchmarks", "Benchmarks", "make bench, with the figures recorded in docs/benchmarks.md"),
)

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#fafbfc}
header,main,footer{max-width:1180px;margin:0 auto;padding:0 20px}
header{padding-top:18px}h1{margin:0 0 4px}h2{border-bottom:2px solid #dde3ea;padding-top:14px}
nav a{margin-right:14px}.meta{color:#5a6675}
table{border-collapse:collapse;margin:8px 0 16px;background:#fff}
th,td{border:1px solid #dde3ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.missing{background:#fff4e5;border-left:4px solid #f0a020;padding:8px 12px;margin:8px 0}
.ok{color:#2b7a3d}.absent{color:#b25a00}
img{max-width:100%;height:auto;border:1px solid #dde3ea;background:#fff;margin:6px 0}
.model{border-top:1px dashed #c9d1da;margin-top:14px}.small{font-size:12px;color:#5a6675}
code{background:#eef2f6;padding:0 3px;border-radius:3px}
details{margin:6px 0 14px}summary{cursor:pointer;font-weight:600}
.nowrap{white-space:nowrap}
.wire{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
"""


def status_table(inputs: ReportInputs) -> Safe:
    """What the report holds, section by section, and the command for what it lacks."""
    present = section_presence(inputs)
    rows = []
    for sid, heading, command in SECTIONS:
        mark = tag("span", "present", cls="ok") if present[sid] else tag(
            "span", "missing", cls="absent")
        rows.append([tag("a", heading, href=f"#{sid}"), mark,
                     "" if present[sid] else tag("code", command)])
    return table(["section", "data", "to make it"], rows)


def section_presence(inputs: ReportInputs) -> dict[str, bool]:
    return {
        "data": bool(inputs.analysis),
        "models": any(m.evaluated for m in inputs.models),
        "tuning": any(m.cv for m in inputs.models),
        "alerts": inputs.alerts.total > 0,
        "benchmarks": bool(inputs.benchmarks),
    }



_BUILDERS = {"data": data_section, "models": models_section, "tuning": tuning_section,
             "alerts": alerts_section, "benchmarks": benchmarks_section}


def render_page(inputs: ReportInputs, now: dt.datetime | None = None) -> str:
    """The whole report as one HTML document (a str)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    where = inputs.warehouse or "none"
    if inputs.warehouse_note:
        where = f"{where} ({inputs.warehouse_note})"
    header = tag("header", tag("h1", "mqttids report"),
                 tag("p", f"Made {now.isoformat(timespec='seconds')} by mqttids {__version__}; "
                          f"warehouse {where}.", cls="meta"),
                 tag("nav", *(tag("a", heading, href=f"#{sid}")
                              for sid, heading, _ in SECTIONS)))
    sections = [tag("section", tag("h2", "What this report holds"), status_table(inputs),
                    id="status")]
    for sid, heading, _ in SECTIONS:
        sections.append(tag("section", tag("h2", heading), _BUILDERS[sid](inputs), id=sid))
    footer = tag("footer", tag("p", "Every figure comes from the stages named above; nothing "
                                    "is shown that they did not write.", cls="small"))
    head = join([Safe('<meta charset="utf-8">'),
                 Safe(f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'),
                 Safe('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                 Safe('<link rel="icon" href="data:,">'),
                 tag("title", "mqttids report"), Safe(f"<style>{STYLE}</style>")])
    return ("<!DOCTYPE html>\n" + tag("html", tag("head", head),
                                      tag("body", header, tag("main", *sections), footer),
                                      lang="en") + "\n")
