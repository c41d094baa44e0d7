"""``flexctl serve`` refuses what it cannot serve; its happy path is test_console_script's."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_console_script import PROCEDURE

from flexctl.cli.main import main
from flexctl.record.sqlite_store import SqliteStore


def test_serve_refuses_a_store_without_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    procedure = tmp_path / "console.yaml"
    procedure.write_text(PROCEDURE, encoding="utf-8")
    db = tmp_path / "empty.db"
    assert (
        main(["serve", str(procedure), "--db", str(db), "--endpoint", "opc.tcp://127.0.0.1:0/x"])
        == 2
    )
    err = capsys.readouterr().err
    assert f"no enabled user in {db}" in err and "flexctl users add" in err
    store = SqliteStore(db)
    try:
        assert store.batches() == []  # nothing was started
    finally:
        store.close()


def test_serve_says_every_problem_of_the_procedure_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    procedure = tmp_path / "bad.yaml"
    procedure.write_text(PROCEDURE.replace("wait: 10 min", "wait: 10 lightyears"), encoding="utf-8")
    assert main(["serve", str(procedure), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err
    assert f"flexctl serve {procedure}: 1 problem; nothing was started" in err
    assert not (tmp_path / "x.db").exists()
