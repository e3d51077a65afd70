"""The HTML report: escaping, inputs from every stage, missing data named, the CLI."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import re

import pyarrow as pa
import pytest

from mqttids import schema
from mqttids.cli import main
from mqttids.report import REPORT_FILE, write_report
from mqttids.report import plots
from mqttids.report.alerts import AlertSummary, add_alerts, json_lines, parse_time
from mqttids.report.benchmarks import parse_benchmarks
from mqttids.report.errors import ReportInputError, ReportOutputError
from mqttids.report.html import Safe, esc, img, number, table, tag
from mqttids.report.inputs import ReportInputs, gather
from mqttids.report.models_view import cv_by_param, cv_points, model_views
from mqttids.report.page import SECTIONS, render_page

EVIL = "<img src=x onerror=alert(1)>"
T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.timezone.utc)


# -- sample data, in the shapes the other stages write ----------------------------------

def analysis_result() -> dict:
    """An object shaped like ``mqttids.spark.analytics.analyze``'s result."""
    balance = {"train": {"legitimate": 8000, "dos": 900, "flood": 60, "malformed": 300,
                         "slowite": 250, "bruteforce": 500},
               "test": {"legitimate": 2000, "dos": 220, "flood": 15, "malformed": 80,
                        "slowite": 60, "bruteforce": 130}}
    columns = [{"name": f.name, "storage": f.storage, "title": f.title, "meaning": f.meaning,
                "kind": f.kind, "null_share": 0.25, "nulls": 2, "distinct": 3, "min": 0,
                "max": 24, "constant": f.name == "mqtt.conack.flags.reserved",
                "empty": f.name == "mqtt.willmsg",
                "top_values": [{"value": 24, "count": 7}],
                "class_means": {"dos": 1.5, "legitimate": 2.5}} for f in schema.FEATURES]
    return {
        "avg_mqtt_len_train": 31.5, "avg_tcp_len_by_target": {"dos": 12.5, "legitimate": 40.0},
        "top_tcp_flags": [{"flag": 24, "count": 900}, {"flag": 16, "count": 400}],
        "class_balance": balance, "train_test_shared_rows": 1234,
        "ceiling": {"accuracy": 0.905, "split": "test",
                    "by_split": {"train": {"accuracy": 0.91, "rows": 10010, "groups": 40,
                                           "conflicting_groups": 3, "conflicting_rows": 900},
                                 "test": {"accuracy": 0.905, "rows": 2505, "groups": 30,
                                          "conflicting_groups": 2, "conflicting_rows": 240}},
                    "conflicts": [{"features": {"mqtt.willtopic": EVIL}, "majority": "dos",
                                   "rows": 12, "labels": {"dos": 8, "legitimate": 4},
                                   "by_split": {"train": {"dos": 8, "legitimate": 4}}}]},
        "profile": {"rows": 12515, "unlabelled_rows": 0, "columns": columns},
    }


def evaluate_record(name: str, accuracy: float, kind: str = "rf") -> dict:
    """One model of ``mqttids evaluate --json`` plus ``train``'s cv and best_params."""
    labels = list(schema.LABELS)
    matrix = [[40 if r == c else r + c for c in range(6)] for r in range(6)]
    return {"name": name, "kind": kind, "features": "packet", "accuracy": accuracy,
            "macro_f1": accuracy - 0.05,
            "per_class": {x: {"precision": 0.9, "recall": 0.8, "f1": 0.5 + i / 20,
                              "support": 100} for i, x in enumerate(labels)},
            "confusion": {"labels": labels, "matrix": matrix}, "ceiling": 0.905,
            "unseen_rows": {"accuracy": accuracy - 0.1, "macro_f1": 0.7},
            "cv": [{"params": {"maxDepth": d, "numTrees": n}, "mean": 0.8 + d / 100 + n / 1e3,
                    "std": 0.01} for d in (5, 10) for n in (20, 50)],
            "best_params": {"maxDepth": 10, "numTrees": 50}}


def alert(k: int, client: str | None = None, label: str = "dos") -> dict:
    return {"time": (T0 + dt.timedelta(seconds=5 * k)).isoformat(), "flow": f"f{k}",
            "src": "10.0.0.9", "dst": "10.0.0.1", "sport": 40000 + k, "dport": 1883,
            "client_id": client if client is not None else f"c{k}", "label": label,
            "score": 0.97, "evidence": {"rows": 3, "topic": EVIL}}


def sample_inputs() -> ReportInputs:
    """Inputs with every section filled and attacker-controlled text in several places."""
    from mqttids.spark.analysis_tables import analysis_tables

    inputs = ReportInputs(warehouse="parquet:/data/wh")
    inputs.analysis = {k: t.to_pylist() for k, t in analysis_tables(analysis_result()).items()}
    inputs.models = model_views([evaluate_record("rf", 0.89), evaluate_record("lr", 0.82, "lr")])
    add_alerts(inputs.alerts, [alert(k, EVIL if k % 4 == 0 else None,
                                     schema.LABELS[1 + k % 5]) for k in range(60)])
    inputs.alerts.sources.append("alerts.jsonl")
    inputs.benchmarks = parse_benchmarks(
        "# Benchmarks\n\n## Capture\n\nDecoding `reduced`.\n\n| what | packets/s |\n"
        "|---|---:|\n| decode | 120,000 |\n| " + EVIL + " | 3 |\n")
    inputs.benchmarks_source = "docs/benchmarks.md"
    return inputs


@functools.lru_cache(maxsize=1)
def sample_page() -> str:
    """The rendered page of :func:`sample_inputs` (made once: plotting takes seconds)."""
    return render_page(sample_inputs(), now=T0)


# -- html --------------------------------------------------------------------------------

def test_values_are_escaped_and_built_markup_is_not():
    cell = tag("td", EVIL, title='"quoted"')
    assert cell == '<td title="&quot;quoted&quot;">&lt;img src=x onerror=alert(1)&gt;</td>'
    assert esc(Safe("<b>")) == "<b>"
    assert esc(None) == ""
    assert tag("br") == "<br>"


def test_img_takes_only_data_uris():
    with pytest.raises(ValueError, match="data URIs"):
        img("javascript:alert(1)", "x")
    assert img("data:image/png;base64,AAAA", EVIL).count("<") == 1


def test_numbers_read_as_a_person_expects():
    assert number(1234567) == "1,234,567"
    assert number(0.123456) == "0.1235"
    assert number(None) == "-"
    assert number(float("nan")) == "-"


def test_table_right_aligns_numeric_columns():
    html = table(["a", "b"], [["x", "1"]], numeric=(1,))
    assert '<td class="num">1</td>' in html


# -- benchmarks --------------------------------------------------------------------------

def test_benchmarks_markdown_sections_tables_lists_and_code():
    text = ("# Benchmarks\n\nIntro line\ncontinued.\n\n## Capture\n\n| what | figure |\n"
            "|---|---|\n| decode | 1,000 |\n| a \\| b | 2 | extra |\n\n- one\n- two\n  more\n\n"
            "```\nraw <b>\n```\n## Models\nText.\n")
    sections = parse_benchmarks(text)
    assert [s.title for s in sections] == ["Benchmarks", "Capture", "Models"]
    assert sections[0].blocks[0].lines == ["Intro line", "continued."]
    capture = sections[1].blocks
    assert [b.kind for b in capture] == ["table", "list", "code"]
    assert capture[0].header == ["what", "figure"]
    assert capture[0].rows == [["decode", "1,000"], ["a | b", "2 | extra"]]
    assert capture[1].lines == ["one", "two more"]
    assert capture[2].lines == ["raw <b>"]


# -- models ------------------------------------------------------------------------------

def test_registry_row_with_json_metrics_fills_the_same_view_as_evaluate():
    record = evaluate_record("rf", 0.9)
    row = {"name": "rf", "kind": "rf", "features": "packet", "path": "mqttids-data/models/rf",
           "metrics": json.dumps({k: record[k] for k in ("accuracy", "macro_f1", "per_class",
                                                         "confusion", "ceiling", "unseen_rows")}),
           "params": json.dumps({"best_params": record["best_params"], "cv": record["cv"]})}
    from_row = model_views([row])[0]
    from_json = model_views([record])[0]
    for attr in ("accuracy", "macro_f1", "per_class", "confusion", "confusion_labels", "ceiling",
                 "unseen_accuracy", "best_params"):
        assert getattr(from_row, attr) == getattr(from_json, attr), attr
    assert from_row.path == "mqttids-data/models/rf"


def test_first_record_of_a_name_wins_and_later_ones_fill_gaps():
    views = model_views([{"name": "rf", "accuracy": 0.9}, {"name": "rf", "accuracy": 0.5,
                                                           "kind": "rf"}, {"name": ""}, None])
    assert len(views) == 1
    assert (views[0].accuracy, views[0].kind) == (0.9, "rf")


def test_a_malformed_confusion_matrix_is_left_out_not_guessed():
    view = model_views([{"name": "m", "confusion": {"labels": ["a", "b"], "matrix": [[1]]}}])[0]
    assert view.confusion == [] and not view.evaluated


def test_cv_rows_flat_or_nested_and_the_best_marked():
    flat = [{"regParam": 0.1, "elasticNetParam": 0.0, "f1": 0.8, "std": 0.02},
            {"regParam": 0.01, "elasticNetParam": 0.0, "f1": 0.85, "std": 0.01},
            {"regParam": "bad", "f1": None}]
    points, metric = cv_points(flat, {"regParam": 0.01, "elasticNetParam": 0.0})
    assert metric == "f1"
    assert [(p.params["regParam"], p.mean, p.best) for p in points] == [(0.1, 0.8, False),
                                                                       (0.01, 0.85, True)]
    by_param = cv_by_param(points)
    assert list(by_param) == ["regParam"]  # elasticNetParam takes one value only
    nested, metric = cv_points([{"params": {"a": 1}, "mean": 0.5, "rank": 1}])
    assert metric == "CV score" and nested[0].best


# -- alerts ------------------------------------------------------------------------------

def test_alert_lines_that_are_not_alerts_are_counted_apart():
    lines = [json.dumps(alert(1)), "not json", "[1, 2]", json.dumps({"label": "dos"}), "",
             json.dumps(alert(2, EVIL))]
    summary = add_alerts(AlertSummary(), json_lines(lines))
    assert (summary.total, summary.skipped) == (2, 3)
    assert summary.top_clients()[0][2] == 1
    assert parse_time("2026-12-03T12:00:00Z") == T0
    assert parse_time("2026-12-03T12:00:00") == T0
    assert parse_time("yesterday") is None


# -- the page ----------------------------------------------------------------------------

def test_an_empty_report_names_every_missing_input_and_its_command():
    page = render_page(ReportInputs())
    for sid, _heading, command in SECTIONS:
        assert f'id="{sid}"' in page
        assert esc(command) in page
    assert page.count('class="missing"') == len(SECTIONS)
    assert "<img" not in page


def test_a_full_report_embeds_its_plots_and_escapes_wire_values():
    page = sample_page()
    uris = re.findall(r'<img src="(data:image/png;base64,[^"]+)"', page)
    assert len(uris) >= 7  # balance, ceiling, F1, 2 confusions, 2 CV, alerts
    assert all(base64.b64decode(u.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for u in uris)
    assert EVIL not in page
    assert esc(EVIL) in page
    assert "<script" not in page.lower()
    assert "Content-Security-Policy" in page
    assert 'class="missing"' not in page
    # Field titles and meanings come from the schema.
    f = schema.BY_NAME["mqtt.kalive"]
    assert esc(f.title) in page and esc(f.meaning) in page


def test_models_without_evaluation_say_evaluate_is_missing():
    inputs = ReportInputs()
    inputs.models = model_views([{"name": "rf", "kind": "rf", "features": "packet"}])
    page = render_page(inputs)
    assert "No test results of these models found" in page
    assert "mqttids evaluate" in page


def test_detect_ran_but_raised_nothing_is_not_called_missing():
    inputs = ReportInputs()
    inputs.alerts.sources.append("alerts.jsonl")
    assert "The detector raised no alerts." in render_page(inputs)


def test_plots_ignore_math_markup_in_labels():
    uri = plots.per_class_f1({"$\\frac{a": {"$x^": 0.5, "dos": 0.7}})
    assert uri.startswith("data:image/png;base64,")
    uri = plots.alerts_over_time([T0, T0 + dt.timedelta(hours=30)], ["$unknown_", "dos"])
    assert uri.startswith("data:image/png;base64,")


# -- writing, reading the real stores, the CLI ------------------------------------------

def test_write_report_from_a_parquet_warehouse_bundles_and_alert_files(tmp_path):
    pytest.importorskip("mqttids.warehouse.parquet")
    from mqttids.detect.alerts import Alert
    from mqttids.detect.sinks import alerts_table
    from mqttids.spark.analysis_tables import analysis_tables
    from mqttids.warehouse import open_warehouse

    url = f"parquet:{tmp_path / 'wh'}"
    with open_warehouse(url) as wh:
        for name, t in analysis_tables(analysis_result()).items():
            wh.write_table(name, t)
        record = evaluate_record("rf", 0.9)
        wh.write_table("models", pa.Table.from_pylist([{
            "name": "rf", "kind": "rf", "features": "packet", "path": "models/rf",
            "metrics": json.dumps({k: record[k] for k in ("accuracy", "per_class", "confusion",
                                                         "ceiling")})}]))
        ts = int(T0.timestamp() * 1e6)
        wh.write_table("alerts", alerts_table(
            [Alert(ts, "f1", "10.0.0.9", "10.0.0.1", 4000, 1883, EVIL, "flood", 0.9, {"rows": 2})],
            "rf"))
    bundle = tmp_path / "models" / "dnn"
    bundle.mkdir(parents=True)
    (bundle / "metadata.json").write_text(json.dumps(evaluate_record("dnn", 0.99, "dnn")))
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("".join(json.dumps(alert(k)) + "\n" for k in range(3)) + "{broken\n")
    bench = tmp_path / "benchmarks.md"
    bench.write_text("## Detect\n\n| figure | value |\n|---|---|\n| packets/s | 100,000 |\n")

    result = write_report(tmp_path / "out", url, models_dir=tmp_path / "models",
                          alert_files=[alerts], benchmarks=bench, now=T0)
    assert result.path == tmp_path / "out" / REPORT_FILE
    assert result.missing == [] and result.models == 2 and result.alerts == 4
    page = result.path.read_text()
    assert "1 records were not alerts" in page
    assert 'id="model-dnn"' in page and 'id="model-rf"' in page
    assert EVIL not in page and esc(EVIL) in page
    assert [p.name for p in (tmp_path / "out").iterdir()] == [REPORT_FILE]


def trained_bundle_meta(name: str, kind: str, grid: list[dict], evaluated: bool) -> tuple:
    """Metadata as `mqttids train` writes it (and `evaluate` extends), and its CV rows."""
    from mqttids.models.tuning import CvRow, summarise

    rows = [CvRow(name, kind, i, params, f, 0.9 + i / 100, 0.8 + i / 50 + f / 1000, 900, 100,
                  1.5) for i, params in enumerate(grid) for f in range(3)]
    meta = {"name": name, "kind": kind, "mqttids_version": "0.1.0",
            "created": T0.isoformat(), "feature_set": "packet", "time_delta": False,
            "features": list(schema.FEATURE_NAMES), "labels": list(schema.LABELS),
            "params": grid[-1], "cv": summarise(rows),
            "train": {"rows": 10_000, "tuning_rows": 1_000, "folds": 3, "seed": 0,
                      "class_counts": {}, "fingerprint": "abc"},
            "metrics": {"cv_macro_f1": summarise(rows)[-1]["mean_macro_f1"]}}
    if evaluated:
        record = evaluate_record(name, 0.9)
        meta["metrics"]["test"] = {**{k: record[k] for k in (
            "accuracy", "macro_f1", "per_class", "confusion", "ceiling", "unseen_rows")},
            "evaluated": T0.isoformat()}
    return meta, rows


def test_train_and_evaluate_outputs_fill_the_models_and_tuning_sections(tmp_path):
    """Bundle metadata, the registry and the tuning table, written by the models stage's code."""
    pytest.importorskip("mqttids.warehouse.parquet")
    from mqttids.models.bundle import TUNING_TABLE, Bundle, register, replace_rows
    from mqttids.models.tuning import tuning_table
    from mqttids.report.inputs import bundle_records
    from mqttids.warehouse import open_warehouse

    rf_meta, rf_rows = trained_bundle_meta("rf-packet", "rf", [
        {"numTrees": 50, "maxDepth": 12}, {"numTrees": 50, "maxDepth": 20}], evaluated=True)
    dnn_meta, dnn_rows = trained_bundle_meta("dnn-packet", "dnn", [
        {"hidden": [256, 128], "dropout": 0.1}, {"hidden": [256, 128], "dropout": 0.3}],
        evaluated=False)
    models = tmp_path / "models"
    for m in (rf_meta, dnn_meta):
        (models / m["name"]).mkdir(parents=True)
        (models / m["name"] / "metadata.json").write_text(json.dumps(m))
    url = f"parquet:{tmp_path / 'wh'}"
    with open_warehouse(url) as wh:
        register(wh, [Bundle(models / m["name"], m) for m in (rf_meta, dnn_meta)])
        replace_rows(wh, TUNING_TABLE, tuning_table(rf_rows + dnn_rows), "model")

    from_warehouse = gather(url).models
    from_bundles = model_views(bundle_records(models))
    for views in (from_warehouse, from_bundles):
        views = {v.name: v for v in views}
        rf, dnn = views["rf-packet"], views["dnn-packet"]
        assert (rf.name, rf.features, rf.accuracy, rf.ceiling) == (
            "rf-packet", "packet, without tcp.time_delta", 0.9, 0.905)
        assert rf.cv_macro_f1 == pytest.approx(0.821) and rf.unseen_accuracy == pytest.approx(0.8)
        assert (rf.train_rows, rf.tuning_rows) == (10_000, 1_000)
        assert rf.cv_metric == "macro-F1"
        assert [(p.params["maxDepth"], round(p.mean, 3), p.best) for p in rf.cv] == [
            (12, 0.801, False), (20, 0.821, True)]
        assert rf.cv[0].std == pytest.approx(0.000816, abs=1e-6)
        assert not dnn.evaluated and len(dnn.cv) == 2 and dnn.cv[1].best
    inputs = gather(url, models_dir=models)
    page = render_page(inputs)
    assert "Tuned on a stratified sample of 1,000 of the 10,000 train rows" in page
    assert page.count("data:image/png") == 5  # ceiling, F1, rf confusion, 2 CV plots
    assert "No test results" not in page and 'id="model-dnn-packet"' not in page


def test_a_missing_parquet_warehouse_is_reported_not_created(tmp_path):
    result = write_report(tmp_path / "out", f"parquet:{tmp_path / 'none'}", models_dir=None,
                          benchmarks=None)
    assert not (tmp_path / "none").exists()
    assert result.missing == [s for s, _, _ in SECTIONS]
    assert f"no warehouse folder at {tmp_path / 'none'}" in result.path.read_text()


def test_gather_refuses_an_alerts_file_that_is_not_there(tmp_path):
    with pytest.raises(ReportInputError, match="does not exist"):
        gather(None, alert_files=(tmp_path / "nope.jsonl",))


def test_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ReportOutputError, match="is a file, not a folder"):
        write_report(tmp_path / "f", None)


def test_cli_report_json_and_plain(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", "-o", str(out), "--no-warehouse", "--json",
                 "--models-dir", str(tmp_path / "m"), "--benchmarks", str(tmp_path / "b")]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["report"] == str(out / REPORT_FILE)
    assert obj["missing"] == [s for s, _, _ in SECTIONS] and obj["alerts"] == 0
    assert main(["report", "-o", str(out), "--no-warehouse", "--models-dir",
                 str(tmp_path / "m"), "--benchmarks", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out / REPORT_FILE}\n"
    assert "make it with: mqttids analyze" in captured.err


def test_cli_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", "-o", str(tmp_path), "--no-warehouse", "--alerts",
                 str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mqttids: error: alerts file" in err


@pytest.mark.postgres
def test_gather_reads_the_same_tables_from_postgresql(pg_dsn, pg_warehouse, monkeypatch):
    from mqttids.detect.alerts import Alert
    from mqttids.detect.sinks import alerts_table
    from mqttids.spark.analysis_tables import analysis_tables
    from mqttids.warehouse import open_warehouse

    monkeypatch.setenv("MQTTIDS_PG_SCHEMA", pg_warehouse)
    with open_warehouse(pg_dsn) as wh:
        for name, t in analysis_tables(analysis_result()).items():
            wh.write_table(name, t)
        ts = int(T0.timestamp() * 1e6)
        wh.write_table("alerts", alerts_table(
            [Alert(ts, "f1", "10.0.0.9", "10.0.0.1", 4000, 1883, EVIL, "flood", 0.9, {"n": 2})],
            "rf"), mode="append")
    inputs = gather(pg_dsn)
    assert inputs.warehouse == pg_dsn and inputs.warehouse_note is None
    assert {r["target"]: r["rows"] for r in inputs.analysis["analysis_class_balance"]
            if r["split"] == "test"}["dos"] == 220
    assert len(inputs.analysis["analysis_profile"]) == len(schema.FEATURES)
    assert inputs.alerts.total == 1 and inputs.alerts.latest[0]["client_id"] == EVIL
    assert inputs.alerts.latest[0]["evidence"] == {"n": 2}
