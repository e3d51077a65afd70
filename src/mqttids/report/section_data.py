"""The data section of the report: class balance, ceiling, flags and the feature profile.

Everything here comes from the ``analysis_*`` tables that ``mqttids analyze``
writes; field titles and meanings come from :mod:`mqttids.schema`.
"""

from __future__ import annotations

import json

from mqttids import schema
from mqttids.report import plots
from mqttids.report.html import Safe, img, join, number, table, tag
from mqttids.report.inputs import ReportInputs


def missing(what: str, command: str) -> Safe:
    """The note a section shows instead of data that are not there."""
    return tag("p", f"No {what} found. Make them with ", tag("code", command), ".",
               cls="missing")

# -- data --------------------------------------------------------------------------------

def data_section(inputs: ReportInputs) -> Safe:
    a = inputs.analysis
    if not a:
        return missing("analysis tables (analysis_*) in the warehouse", "mqttids analyze")
    parts = [summary_table(a.get("analysis_summary", [])),
             balance_part(a.get("analysis_class_balance", [])),
             ceiling_part(a.get("analysis_ceiling", []), a.get("analysis_conflicts", [])),
             flags_part(a.get("analysis_top_flags", []), a.get("analysis_tcp_len_by_target", [])),
             profile_part(a.get("analysis_profile", []), a.get("analysis_class_means", []))]
    return join(parts)


def summary_table(rows: list[dict]) -> Safe:
    if not rows:
        return Safe("")
    def value(v):
        return int(v) if isinstance(v, float) and v.is_integer() else v
    return table(["figure", "value", "meaning"],
                 [[tag("code", r.get("name")), number(value(r.get("value"))), r.get("detail")]
                  for r in rows], numeric=(1,))


def balance_part(rows: list[dict]) -> Safe:
    if not rows:
        return tag("h3", "Class balance") + missing("class balance", "mqttids analyze")
    balance: dict[str, dict[str, int]] = {}
    for r in rows:
        balance.setdefault(str(r["split"]), {})[str(r["target"])] = int(r["rows"] or 0)
    labels = list(dict.fromkeys(x for s in balance.values() for x in s))
    splits = list(balance)
    body = [[label, *(number(balance[s].get(label, 0)) for s in splits),
             number(sum(balance[s].get(label, 0) for s in splits))] for label in labels]
    body.append([tag("b", "all"), *(number(sum(balance[s].values())) for s in splits),
                 number(sum(sum(v.values()) for v in balance.values()))])
    return join([tag("h3", "Class balance per split"),
                 img(plots.class_balance(balance), "rows per class and split"),
                 table(["target", *splits, "all"], body,
                       numeric=tuple(range(1, len(splits) + 2)))])


def ceiling_part(rows: list[dict], conflicts: list[dict]) -> Safe:
    if not rows:
        return Safe("")
    body = [[r.get("split"), number(r.get("accuracy")), number(r.get("rows")),
             number(r.get("groups")), number(r.get("conflicting_groups")),
             number(r.get("conflicting_rows"))] for r in rows]
    parts = [tag("h3", "Packet-level ceiling"),
             tag("p", "Rows with identical 33 packet features but different labels cannot "
                      "all be right: giving every such group its majority label is the best "
                      "any packet-feature model can do."),
             table(["split", "ceiling accuracy", "labelled rows", "groups", "conflicting groups",
                    "rows in them"], body, numeric=(1, 2, 3, 4, 5))]
    if conflicts:
        body = [[c.get("conflict"), c.get("split"), c.get("target"), number(c.get("rows")),
                 c.get("majority"), tag("span", c.get("features"), cls="wire")]
                for c in conflicts]
        parts.append(tag("details", tag("summary", "Largest label-conflicting groups"),
                         table(["group", "split", "target", "rows", "majority",
                                "features (non-NULL)"], body, numeric=(0, 3))))
    return join(parts)


def flags_part(flags: list[dict], tcp_len: list[dict]) -> Safe:
    parts = []
    if flags:
        parts += [tag("h3", "Most frequent tcp.flags"),
                  table(["rank", "tcp.flags", "count"],
                        [[r.get("rank"), tag("code", r.get("flag_hex")), number(r.get("count"))]
                         for r in flags], numeric=(0, 2))]
    if tcp_len:
        parts += [tag("h3", "Average tcp.len per target"),
                  table(["target", "average tcp.len"],
                        [[r.get("target"), number(r.get("avg_tcp_len"), 2)] for r in tcp_len],
                        numeric=(1,))]
    return join(parts)


def _field(name: str) -> schema.Field | None:
    try:
        return schema.BY_NAME[schema.field_name(name)]
    except KeyError:
        return None


def _value_text(f: schema.Field | None, value) -> str:
    if value is None:
        return "NULL"
    if f is not None and f.kind == schema.HEX and isinstance(value, (int, float)):
        return f"0x{int(value):04x}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _top_values(f: schema.Field | None, text) -> str:
    try:
        values = json.loads(text) if isinstance(text, str) else (text or [])
        return ", ".join(f"{_value_text(f, v.get('value'))} ({v.get('count', 0):,})"
                         for v in values)
    except (ValueError, AttributeError, TypeError):
        return str(text)


def profile_part(rows: list[dict], class_means: list[dict]) -> Safe:
    """The feature profile, each field with its Wireshark title and meaning from the schema."""
    if not rows:
        return Safe("")
    body = []
    for r in rows:
        f = _field(str(r.get("column")))
        name = f.name if f else r.get("column")
        title = f.title if f else r.get("title")
        meaning = f.meaning if f else r.get("meaning")
        share = r.get("null_share")
        note = "empty" if r.get("empty") else "constant" if r.get("constant") else ""
        body.append([join([tag("code", name), tag("br"), tag("span", title, cls="small")]),
                     meaning, "-" if share is None else f"{100 * share:.1f}",
                     number(r.get("distinct")), _value_text(f, r.get("min")),
                     _value_text(f, r.get("max")),
                     tag("span", _top_values(f, r.get("top_values")), cls="wire"), note])
    parts = [tag("h3", "Feature profile"),
             tag("p", "Every column with its Wireshark title and meaning. Empty and constant "
                      "columns carry nothing; the preprocessing pipeline drops them.",
                 cls="small"),
             table(["field (Wireshark title)", "meaning", "NULL %", "distinct", "min", "max",
                    "top values (count)", "note"], rows=body, numeric=(2, 3))]
    if class_means:
        parts.append(class_means_part(class_means))
    return join(parts)


def class_means_part(rows: list[dict]) -> Safe:
    columns = list(dict.fromkeys(r["column"] for r in rows))
    labels = list(dict.fromkeys(r["target"] for r in rows))
    means = {(r["column"], r["target"]): r.get("mean") for r in rows}
    body = [[tag("code", c), *(number(means.get((c, x)), 3) for x in labels)] for c in columns]
    return tag("details", tag("summary", "Mean per class"),
               table(["field", *labels], body, numeric=tuple(range(1, len(labels) + 1))))
