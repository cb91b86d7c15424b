"""The dataset artifact on disk: where build-dataset may write, what a killed build leaves, what a broken one
reads as (issue 15, items 5 and 9). Every refusal is one line, and the folder it names is left as it was."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from training.dataset import artifact
from training.errors import InputError


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (hidden ones too) with its bytes; None for folders."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


# -- build-dataset --out -------------------------------------------------------------------------------------


def test_a_folder_holding_other_things_is_refused_before_the_build(isolated_services, tmp_path):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "sub" / "data.csv").write_text("a,b\n")
    before = snapshot(tmp_path)
    line = one_line_error(run_cli("build-dataset", "--out", str(out)))  # one line: no build progress either
    assert f"--out {out} holds notes.txt, sub, which is not a dataset artifact; refusing to replace it" in line
    assert snapshot(tmp_path) == before


def test_out_dot_is_refused_before_the_build(isolated_services, tmp_path, monkeypatch):
    for name in ("README.md", "Makefile"):
        (tmp_path / name).write_text("x")
    for name in ("data", "training", "a", "b", "c"):
        (tmp_path / name).mkdir()
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    line = one_line_error(run_cli("build-dataset", "--out", "."))
    assert "--out . holds Makefile, README.md, a, b, c and 2 more, which is not a dataset artifact" in line
    assert snapshot(tmp_path) == before


def test_the_project_root_is_refused(isolated_services):
    from training.infra.settings import PROJECT_ROOT

    entries = sorted(p.name for p in PROJECT_ROOT.iterdir())
    line = one_line_error(run_cli("build-dataset", "--out", str(PROJECT_ROOT)))
    assert f"--out {PROJECT_ROOT} holds" in line and "which is not a dataset artifact" in line
    assert sorted(p.name for p in PROJECT_ROOT.iterdir()) == entries


def test_a_file_is_refused(isolated_services, tmp_path):
    target = tmp_path / "dataset.parquet"
    target.write_bytes(b"PAR1")
    line = one_line_error(run_cli("build-dataset", "--out", str(target)))
    assert f"--out {target} is not a folder" in line and target.read_bytes() == b"PAR1"


def test_a_symbolic_link_is_refused(isolated_services, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    line = one_line_error(run_cli("build-dataset", "--out", str(tmp_path / "link")))
    assert f"--out {tmp_path / 'link'} is a symbolic link; give the folder it points to ({tmp_path / 'real'})" in line
    assert (tmp_path / "link").is_symlink() and not any((tmp_path / "real").iterdir())


def test_an_audited_dataset_and_an_empty_folder_may_be_replaced(bundled_dataset, tmp_path):
    _, dataset = bundled_dataset
    empty = tmp_path / "empty"
    empty.mkdir()
    artifact.save(dataset, empty)
    (empty / artifact.REPORT_FILE).write_text("{}")  # verify-leakage's report of the previous build
    (empty / f".{artifact.REPORT_FILE}.abc123").write_text("")  # and its staging file, from a killed audit
    artifact.save(dataset, empty)
    assert sorted(p.name for p in empty.iterdir()) == [artifact.METADATA_FILE, artifact.part_name(0)]  # report gone


def test_refused_by_save_too(bundled_dataset, tmp_path):
    _, dataset = bundled_dataset
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(InputError, match=r"holds keep\.txt, which is not a dataset artifact"):
        artifact.save(dataset, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# -- staging folders a killed build left behind --------------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _staging(parent: Path, name: str, files: dict[str, str] | None = None) -> Path:
    folder = parent / name
    folder.mkdir()
    for file, text in (files or {artifact.part_name(0): "PAR1 half written"}).items():
        (folder / file).write_text(text)
    return folder


def test_abandoned_staging_folders_are_removed_and_live_or_foreign_ones_kept(bundled_dataset, tmp_path):
    _, dataset = bundled_dataset
    host = socket.gethostname()
    killed = _staging(tmp_path, f".panel.build-{host}-{_dead_pid()}-abcd1234")
    killed_empty = _staging(tmp_path, f".panel.build-{host}-{_dead_pid()}-efgh5678", {})
    old_unnamed = _staging(tmp_path, ".panel.k2j4h5g6")  # written before staging names carried a pid
    day_ago = time.time() - 25 * 3600
    os.utime(old_unnamed, (day_ago, day_ago))
    keep = [
        _staging(tmp_path, f".panel.build-{host}-{os.getpid()}-live0001"),  # its build is still running
        _staging(tmp_path, f".panel.build-otherhost-{_dead_pid()}-abcd1234"),  # another machine's build
        _staging(tmp_path, ".panel.recent01"),  # unnamed but recent: maybe a running build of older code
        _staging(tmp_path, f".panel.build-{host}-{_dead_pid()}-user0001", {"notes.txt": "mine"}),  # not ours
        _staging(tmp_path, ".panel.backup"),  # not a staging name
        _staging(tmp_path, f".other.build-{host}-{_dead_pid()}-abcd1234"),  # another artifact's staging
    ]
    kept = {str(p): snapshot(p) for p in keep}
    removed = artifact.remove_abandoned_staging(tmp_path / "panel")
    assert sorted(removed) == sorted([killed, killed_empty, old_unnamed])
    assert {str(p): snapshot(p) for p in keep} == kept
    artifact.save(dataset, tmp_path / "panel")  # save cleans up too, and leaves no staging folder of its own
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".panel."))
    assert hidden == sorted(p.name for p in keep if p.name.startswith(".panel."))


def test_a_refused_build_removes_nothing(isolated_services, tmp_path):
    killed = _staging(tmp_path, f".panel.build-{socket.gethostname()}-{_dead_pid()}-abcd1234")
    (tmp_path / "panel").mkdir()
    (tmp_path / "panel" / "notes.txt").write_text("x")
    result = run_cli("build-dataset", "--out", str(tmp_path / "panel"))
    one_line_error(result)  # refused: cleaning happens only for a build that goes ahead
    assert killed.exists()


# -- reading a broken artifact -------------------------------------------------------------------------------


@pytest.fixture
def copy(bundled_dataset, tmp_path) -> Path:
    _, dataset = bundled_dataset
    return artifact.save(dataset, tmp_path / "copy")


def _edit_metadata(folder: Path, edit) -> None:
    meta = json.loads((folder / artifact.METADATA_FILE).read_text())
    edit(meta)
    (folder / artifact.METADATA_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / artifact.METADATA_FILE).write_text('{"format_version": 1,'), "metadata.json is not valid JSON"),
        (lambda f: (f / artifact.METADATA_FILE).write_text("[]"), "metadata.json must hold a JSON object"),
        (lambda f: (f / artifact.METADATA_FILE).write_bytes(b"\xff\xfe"), "metadata.json cannot be read"),
        (lambda f: _edit_metadata(f, lambda m: m.pop("fingerprint")), "metadata.json lacks fingerprint"),
        (lambda f: _edit_metadata(f, lambda m: m.pop("features") and m.pop("config")), "lacks features, config"),
        (lambda f: _edit_metadata(f, lambda m: m.update(features="close")), "features must be a non-empty list"),
        (lambda f: _edit_metadata(f, lambda m: m["config"].pop("labels")), "config lacks one of data, features"),
        (lambda f: _edit_metadata(f, lambda m: m.update(format_version=9)), "format 9 (written by an earlier version)"),
        (lambda f: _edit_metadata(f, lambda m: m["features"].append("nope")), "lacks column(s) nope that"),
        (lambda f: _truncate(f / artifact.part_name(0)), "part-00000.parquet cannot be read (truncated or corrupt?"),
        (lambda f: (f / artifact.part_name(0)).write_bytes(b"PAR1" + b"\0" * 64), "cannot be read (truncated or"),
    ],
)
def test_a_broken_artifact_is_one_line_for_load_verify_and_train(copy, breakage, message):
    breakage(copy)
    with pytest.raises(InputError, match=None) as raised:
        artifact.load(copy)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    before = snapshot(copy)
    for command in (("verify-leakage", "--skip-rebuild"), ("train", "--results", str(copy.parent / "r.json"))):
        assert message in one_line_error(run_cli(command[0], "--dataset", str(copy), *command[1:]))
    assert snapshot(copy) == before and not (copy.parent / "r.json").exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
