"""``flexctl audit verify``: entries checked per chain, the first bad entry, exit 0/1/2."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexctl.cli.main import main
from flexctl.record.migrations import LATEST
from flexctl.record.sqlite_store import SqliteStore
from tests.record_factory import filled_store, raw


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "record.db"
    filled_store(path, entries=4, audits=3).close()
    return path


def test_an_intact_store_exits_0_with_the_counts(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"{db}:\n  journal: 4 entries checked, intact\n  audit: 3 entries checked, intact\nintact\n"
    )
    assert err == ""


def test_a_broken_chain_exits_1_naming_table_seq_and_reason(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with raw(db, drop_triggers=True) as conn:
        conn.execute("UPDATE journal SET actor = 'mallory' WHERE seq = 2")
    assert main(["audit", "verify", "--db", str(db)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("  journal: 4 entries checked, BROKEN at seq 2: hash mismatch")
    assert out[2] == "  audit: 3 entries checked, intact"
    assert out[3] == "broken: journal at seq 2"


def test_both_chains_broken_are_both_named(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with raw(db, drop_triggers=True) as conn:
        conn.execute("DELETE FROM journal WHERE seq = 1")
        conn.execute("DELETE FROM audit WHERE seq = 2")
    assert main(["audit", "verify", "--db", str(db)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "  journal: 3 entries checked, BROKEN at seq 2: "
        "seq gap: expected seq 1 at the start; entries were deleted"
    )
    assert out[2].startswith("  audit: 2 entries checked, BROKEN at seq 3: seq gap")
    assert out[3] == "broken: journal at seq 2, audit at seq 3"


def test_an_empty_store_is_intact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SqliteStore(tmp_path / "empty.db").close()
    assert main(["audit", "verify", "--db", str(tmp_path / "empty.db")]) == 0
    assert "journal: 0 entries checked, intact" in capsys.readouterr().out


def test_a_missing_file_exits_2_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.db"
    assert main(["audit", "verify", "--db", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err
        == f"flexctl audit verify: error: {missing}: does not exist (expected a flexctl store)\n"
    )
    assert not missing.exists()


def test_the_default_is_flexctl_db_in_the_working_directory(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["audit", "verify"]) == 2
    assert "flexctl.db: does not exist" in capsys.readouterr().err
    assert not (tmp_path / "flexctl.db").exists()
    db.rename(tmp_path / "flexctl.db")
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("flexctl.db:\n")


def test_a_folder_a_foreign_file_and_a_newer_schema_exit_2(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", "--db", str(tmp_path)]) == 2
    assert "is not a file" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("not a database, just notes\n" * 50)
    assert main(["audit", "verify", "--db", str(text)]) == 2
    assert f"{text}: not a flexctl store" in capsys.readouterr().err
    with raw(db) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    assert main(["audit", "verify", "--db", str(db)]) == 2
    assert f"schema version {LATEST + 1} is newer" in capsys.readouterr().err


def test_audit_without_a_tool_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["audit"])
    assert caught.value.code == 2
    assert "verify" in capsys.readouterr().err
