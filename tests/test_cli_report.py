"""``flexctl report``: files written, JSON to stdout, exit 0/1/2, never a new store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from flexctl.cli.main import main
from flexctl.cli.report import write_report
from flexctl.record.sqlite_store import SqliteStore
from flexctl.report import plots
from tests.record_factory import raw
from tests.report_factory import BATCH, report_store

PNG = b"\x89PNG\r\n\x1a\nfake"


@pytest.fixture(autouse=True)
def fake_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plots are drawn in tests/test_report_html.py; here only the files matter."""
    monkeypatch.setattr(plots, "render", lambda trend: PNG)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "record.db"
    report_store(path).close()
    return path


def test_the_html_goes_to_report_batch_html_in_the_working_directory(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["report", BATCH, "--db", str(db)]) == 0
    written = work / f"report-{BATCH}.html"
    assert written.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert capsys.readouterr().out == f"batch {BATCH} (Stopped): wrote report-{BATCH}.html\n"
    assert [p.name for p in work.iterdir()] == [written.name]  # no partial file left


def test_out_names_the_file(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "batch record.html"
    assert main(["report", BATCH, "--db", str(db), "--out", str(out)]) == 0
    assert "Batch record B-7" in out.read_text(encoding="utf-8")


def test_json_goes_to_stdout_and_nothing_else_does(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", BATCH, "--db", str(db), "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert (data["batch_id"], data["simulated"]) == (BATCH, True)
    assert err == ""


def test_json_with_out_goes_to_the_file(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b7.json"
    assert main(["report", BATCH, "--db", str(db), "--json", "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["schema"].startswith("flexctl.batch-report")
    assert capsys.readouterr().out == f"batch {BATCH} (Stopped): wrote {out}\n"


def test_a_missing_store_exits_2_naming_it_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.db"
    assert main(["report", BATCH, "--db", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"flexctl report: error: {missing}: does not exist (expected a flexctl store)\n"
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_store_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("not a database\n" * 100)
    assert main(["report", BATCH, "--db", str(bogus)]) == 2
    assert str(bogus) in capsys.readouterr().err


def test_an_unknown_batch_exits_2_naming_it_and_the_batches_there(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", "B-404", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"flexctl report: error: {db}: no batch 'B-404' (batches there: {BATCH}, OTHER)\n"
    )
    assert not (tmp_path / "report-B-404.html").exists()


def test_a_broken_record_is_written_and_exits_1(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with raw(db, drop_triggers=True) as conn:
        conn.execute("UPDATE audit SET reason = 'edited' WHERE seq = 2")
    out = tmp_path / "r.html"
    assert main(["report", BATCH, "--db", str(db), "--out", str(out)]) == 1
    assert "INTEGRITY CHECK FAILED" in out.read_text(encoding="utf-8")
    assert "integrity check FAILED" in capsys.readouterr().err


def test_an_unwritable_out_exits_1(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no such folder" / "r.html"
    assert main(["report", BATCH, "--db", str(db), "--out", str(out)]) == 1
    assert f"cannot write {out}" in capsys.readouterr().err


def test_a_batch_id_is_made_a_safe_file_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.db"
    with report_store(path) as store:
        store.create_batch(replace(store.batch(BATCH), batch_id="lot 7/a"))
    monkeypatch.chdir(tmp_path)
    assert main(["report", "lot 7/a", "--db", str(path)]) == 0
    assert (tmp_path / "report-lot_7_a.html").is_file()


def test_write_report_is_what_flexctl_run_calls(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "end-of-batch.html"
    with SqliteStore(db, create=False) as store:
        assert write_report(store, BATCH, out) == out
    assert "Batch record B-7" in out.read_text(encoding="utf-8")
