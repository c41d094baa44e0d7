"""The batch record as JSON: schema and simulated first, stable text, trends as data."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import Sample
from flexctl.report.json_export import SCHEMA, render_json, report_data
from flexctl.report.model import build_report
from tests.record_factory import T0
from tests.report_factory import BATCH, GROW, journal, report_store

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
TOP_KEYS = [
    "schema", "simulated", "batch_id", "generated_utc", "store", "header", "summary",
    "unit_procedures", "signatures", "rejected_entries", "state_history", "deviations",
    "interlocks", "alarms", "command_errors", "records", "trends", "audit_trail", "integrity",
]  # fmt: skip


def _json(path: Path, *, simulated: bool = True) -> str:
    with report_store(path, simulated=simulated) as store:
        return render_json(build_report(store, BATCH, now=NOW))


def test_schema_and_simulated_come_first(tmp_path: Path) -> None:
    data = json.loads(_json(tmp_path / "a.db"))
    assert list(data) == TOP_KEYS
    assert (data["schema"], data["simulated"], data["batch_id"]) == (SCHEMA, True, BATCH)
    assert json.loads(_json(tmp_path / "b.db", simulated=False))["simulated"] is False


def test_the_same_record_gives_the_same_text(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    text = _json(path)
    with SqliteStore(path, create=False) as store:
        again = render_json(build_report(store, BATCH, now=NOW))
    assert again == text
    assert text.endswith("}\n")


def test_the_content_is_the_reports(tmp_path: Path) -> None:
    data = json.loads(_json(tmp_path / "r.db"))
    header = data["header"]
    assert (
        header["procedure"]["name"] == "mini-car-t" and header["procedure"]["stored_text_matches"]
    )
    assert header["final_state"] == "Stopped"
    assert header["final_at"]["process"] == "d03 04:33"
    assert header["final_at"]["utc"].endswith("+00:00")
    expansion = data["unit_procedures"][1]
    grow = next(s for s in expansion["steps"] if s["step"] == "grow")
    assert [(a["attempt"], a["result"]) for a in grow["attempts"]] == [
        (1, "interrupted"),
        (2, "done"),
    ]
    signature = data["signatures"][0]
    assert {k: signature[k] for k in ("printed_name", "meaning", "role", "binding")} == {
        "printed_name": "Jane Doe",
        "meaning": "performed",
        "role": "operator",
        "binding": "intact",
    }
    assert signature["signed_at"].startswith("2025-03-04T")
    assert data["summary"]["dose_reached"] is True
    assert [d["deviation"] for d in data["deviations"]] == ["wait_until timeout"]
    assert [a["action"] for a in data["audit_trail"]] == ["batch created", "parameter changed"]
    assert data["integrity"]["ok"] is True
    # Every batch's entries: B-7's and the other batch's one.
    assert data["integrity"]["checked"] == {"journal": len(journal().entries) + 1, "audit": 3}


def test_trends_are_data_series_not_images(tmp_path: Path) -> None:
    text = _json(tmp_path / "r.db")
    assert "data:image" not in text
    plots = json.loads(text)["trends"]["plots"]
    assert [p["key"] for p in plots] == ["bioreactor", "thaw", "freezer", "other:bioreactor"]
    temperature = plots[0]["panels"][0]["series"][0]
    assert (temperature["device"], temperature["signal"]) == ("bioreactor", "temperature")
    assert temperature["columns"] == ["elapsed_s", "value"]
    assert temperature["points"][0] == [GROW - 100.0, 37.0]


def test_a_nan_sample_is_null(tmp_path: Path) -> None:
    with report_store(tmp_path / "r.db") as store:
        store.write_samples(
            [
                Sample(BATCH, "bioreactor", "ph", GROW + 0.5, T0 + timedelta(seconds=9), math.nan),
            ]
        )
        text = render_json(build_report(store, BATCH, now=NOW))
    assert "NaN" not in text
    ph = json.loads(text)["trends"]["plots"][0]["panels"][2]["series"][0]["points"]
    assert [GROW - 100 + 0.5, None] in ph


def _keys_sorted_below(data: Any, path: str = "") -> list[str]:
    """Paths of recorded payload objects (fields, details) whose keys are not sorted."""
    bad = []
    if isinstance(data, dict):
        for key, value in data.items():
            payload = key in ("fields", "details", "other") and isinstance(value, dict)
            if payload and list(value) != sorted(value):
                bad.append(f"{path}.{key}")
            bad += _keys_sorted_below(value, f"{path}.{key}")
    elif isinstance(data, list):
        for index, value in enumerate(data):
            bad += _keys_sorted_below(value, f"{path}[{index}]")
    return bad


def test_recorded_payloads_have_sorted_keys(tmp_path: Path) -> None:
    with report_store(tmp_path / "r.db") as store:
        data = report_data(build_report(store, BATCH, now=NOW))
    assert _keys_sorted_below(data) == []
