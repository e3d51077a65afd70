"""Pieces shared by both stores: ordered parallel conversion, options, reports."""

from __future__ import annotations

import time

import pytest

from mqttids.errors import UsageError
from mqttids.warehouse.base import load_workers, ordered_map
from mqttids.warehouse.report import BatchReport, IngestReport


def test_ordered_map_keeps_input_order_whatever_finishes_first():
    def slow_for_small(n):
        time.sleep(0.01 * (5 - n % 5))
        return n * n

    assert list(ordered_map(slow_for_small, range(20), workers=3)) == [n * n for n in range(20)]


def test_ordered_map_raises_the_first_error_in_order_and_stops():
    started = []

    def fail_at_three(n):
        started.append(n)
        if n == 3:
            raise ValueError("bad block 3")
        return n

    out = []
    with pytest.raises(ValueError, match="bad block 3"):
        for value in ordered_map(fail_at_three, range(1000), workers=2):
            out.append(value)
    assert out == [0, 1, 2] and len(started) < 10


def test_load_workers_from_the_environment(monkeypatch):
    monkeypatch.setenv("MQTTIDS_LOAD_WORKERS", "3")
    assert load_workers() == 3
    monkeypatch.setenv("MQTTIDS_LOAD_WORKERS", "many")
    with pytest.raises(UsageError, match="MQTTIDS_LOAD_WORKERS='many'"):
        load_workers()
    monkeypatch.delenv("MQTTIDS_LOAD_WORKERS")
    assert 1 <= load_workers() <= 4


def test_report_totals_count_loaded_batches_and_list_skipped_ones():
    report = IngestReport([BatchReport("a.csv", "0" * 64, "csv", 1, read=5, loaded=4, rejected=1),
                           BatchReport("b.csv", "0" * 64, "csv", 1, skipped=True)])
    assert (report.read, report.loaded, report.rejected) == (5, 4, 1)
    assert report.to_json()["skipped_sources"] == ["b.csv"]
