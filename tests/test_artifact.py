"""The dataset artifact on disk: where build-dataset may write, what a killed build leaves, what a broken one
reads as. Every refusal is one line, and the folder it names is left as it was."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
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
    assert f"--out {out} holds notes.txt, sub, which is not part of a dataset artifact; refusing to replace it" in line
    assert snapshot(tmp_path) == before


def test_out_dot_is_refused_before_the_build(isolated_services, tmp_path, monkeypatch):
    for name in ("README.md", "Makefile"):
        (tmp_path / name).write_text("x")
    for name in ("data", "training", "a", "b", "c"):
        (tmp_path / name).mkdir()
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    line = one_line_error(run_cli("build-dataset", "--out", "."))
    assert "--out . holds Makefile, README.md, a, b, c and 2 more, which is not part of a dataset artifact" in line
    assert snapshot(tmp_path) == before


def test_the_project_root_is_refused(isolated_services):
    from training.infra.settings import PROJECT_ROOT

    entries = sorted(p.name for p in PROJECT_ROOT.iterdir())
    line = one_line_error(run_cli("build-dataset", "--out", str(PROJECT_ROOT)))
    assert f"--out {PROJECT_ROOT} holds" in line and "which is not part of a dataset artifact" in line
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
    report = {"status": "passed", "dataset": {"fingerprint": dataset.metadata["fingerprint"]}}
    (empty / artifact.REPORT_FILE).write_text(json.dumps(report))  # verify-leakage's report of the previous build
    (empty / f".{artifact.REPORT_FILE}.abc123_z").write_text("")  # and its staging file, from a killed audit
    artifact.save(dataset, empty)
    assert sorted(p.name for p in empty.iterdir()) == [
        artifact.MARKER_FILE,
        artifact.METADATA_FILE,
        artifact.part_name(0),
    ]


def test_the_marker_leaves_the_bundled_fingerprint_alone(bundled_dataset):
    out, dataset = bundled_dataset
    marker = json.loads((out / artifact.MARKER_FILE).read_text())
    assert marker == {
        "artifact": artifact.ARTIFACT_KIND,
        "format_version": 2,
        "fingerprint": dataset.metadata["fingerprint"],
    }
    assert dataset.metadata["fingerprint"].startswith("efa2a1a8111d")
    assert artifact.fingerprint(dataset, dataset.metadata["config"], dataset.features) == marker["fingerprint"]


def test_refused_by_save_too(tiny, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(InputError, match=r"holds keep\.txt, which is not part of a dataset artifact"):
        artifact.save(tiny, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# -- only what proves to be an artifact is replaced (unit tier: an in-memory dataset, no service) -------------


@pytest.fixture
def tiny() -> artifact.Dataset:
    """Three rows of one symbol with the metadata a build writes: enough for the artifact's own rules."""
    from training.config import load_config

    times = pd.date_range("2024-01-02 21:00", periods=3, freq="D", tz="UTC")
    frame = pd.DataFrame({"symbol": "AAPL", "event_timestamp": times, "t1": times, "feature_timestamp": times})
    for column in artifact.LABEL_COLUMNS:
        frame[column] = "train" if column == "split" else 1.0
    frame["roc_1"] = [0.1, 0.2, 0.3]
    metadata = {"format_version": artifact.FORMAT_VERSION, "features": ["roc_1"], "feature_service": "tiny",
                "config": load_config(None).dump(), "symbols": ["AAPL"], "split": {}, "rows": 3}  # fmt: skip
    return artifact.Dataset(metadata=metadata, frame=frame)


def test_a_dataset_carries_a_marker_that_matches_its_metadata(tiny, tmp_path):
    out = artifact.save(tiny, tmp_path / "ds")
    marker = json.loads((out / artifact.MARKER_FILE).read_text())
    metadata = json.loads((out / artifact.METADATA_FILE).read_text())
    assert marker == {"artifact": "ohlcv-training-dataset", "format_version": 2, "fingerprint": metadata["fingerprint"]}
    assert artifact.fingerprint(artifact.load(out), metadata["config"], ["roc_1"]) == marker["fingerprint"]
    artifact.save(tiny, out)  # its own artifact is replaced
    assert json.loads((out / artifact.MARKER_FILE).read_text()) == marker


def test_a_users_own_metadata_and_report_are_not_replaced(tiny, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / artifact.METADATA_FILE).write_text("my notes about the data\n")
    (out / artifact.REPORT_FILE).write_text("what I found\n")
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as raised:
        artifact.save(tiny, out)
    assert f"--out {out} holds leakage_report.json, metadata.json, which is not part of a dataset artifact" in str(
        raised.value
    )
    assert "\n" not in str(raised.value) and snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("tamper", "named", "why"),
    [
        (lambda out: (out / "part-00007.parquet").write_text("my text"), "part-00007.parquet", None),
        (lambda out: (out / artifact.part_name(0)).write_text("my text"), artifact.part_name(0), None),
        (lambda out: (out / artifact.REPORT_FILE).write_text("my text"), artifact.REPORT_FILE, None),
        (lambda out: (out / artifact.MARKER_FILE).write_text('{"artifact": "other"}'), artifact.MARKER_FILE,
         ".ohlcv-dataset.json is not this project's dataset marker"),
        (lambda out: (out / artifact.MARKER_FILE).write_text(artifact._marker_text("0" * 64)), artifact.MARKER_FILE,
         ".ohlcv-dataset.json and metadata.json disagree on the fingerprint"),
    ],
)  # fmt: skip
def test_a_file_named_like_the_artifacts_own_is_not_deleted(tiny, tmp_path, tamper, named, why):
    out = artifact.save(tiny, tmp_path / "ds")
    tamper(out)
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as raised:
        artifact.save(tiny, out)
    message = str(raised.value)
    assert f"--out {out} holds {named}" in message and "refusing to replace it" in message, message
    assert why is None or f"({why})" in message, message
    assert snapshot(tmp_path) == before


def test_a_dataset_from_before_the_marker_is_replaced_when_its_rows_prove_it(tiny, tmp_path):
    out = artifact.save(tiny, tmp_path / "old")
    (out / artifact.MARKER_FILE).unlink()
    artifact.check_target(out)  # proven by hashing its parts; the marker is written so the next check is cheap
    assert (
        json.loads((out / artifact.MARKER_FILE).read_text())["fingerprint"]
        == artifact.load(out).metadata["fingerprint"]
    )
    (out / artifact.MARKER_FILE).unlink()
    artifact.save(tiny, out)
    assert (out / artifact.MARKER_FILE).is_file()


def test_a_dataset_from_before_the_marker_whose_rows_were_edited_is_refused(tiny, tmp_path):
    out = artifact.save(tiny, tmp_path / "old")
    (out / artifact.MARKER_FILE).unlink()
    edited = tiny.frame.assign(roc_1=[9.0, 9.0, 9.0])
    edited.to_parquet(out / artifact.part_name(0), index=False)
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match=r"\(no \.ohlcv-dataset\.json, and its rows do not hash to the fingerprint"):
        artifact.save(tiny, out)
    assert snapshot(tmp_path) == before


def test_a_folder_beside_the_target_with_the_old_swap_name_is_kept(tiny, tmp_path):
    out = artifact.save(tiny, tmp_path / "ds")
    (tmp_path / ".ds.old").mkdir()
    (tmp_path / ".ds.old" / "mine.txt").write_text("keep")
    artifact.save(tiny, out)
    assert (tmp_path / ".ds.old" / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.old", "ds"]  # no staging or retired folder left


@pytest.mark.parametrize("where", ["/proc/nope/ds", "{file}/ds"])
def test_an_out_that_cannot_be_created_is_refused_before_the_build(tmp_path, where):
    (tmp_path / "a-file").write_text("x")
    out = where.format(file=tmp_path / "a-file")
    line = one_line_error(run_cli("build-dataset", "--out", out))  # no service is reached: refused first
    assert f"error: --out {out} cannot be written: " in line
    assert (
        ("a-file is a file, not a folder" in line) if "{file}" in where else ("nothing can be created in /proc" in line)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


# -- staging folders a killed build left behind --------------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _staging(parent: Path, name: str, files: dict[str, str] | None = None, marked: bool = True) -> Path:
    folder = parent / name
    folder.mkdir()
    if marked:  # what a build writes first into its staging folder
        (folder / artifact.MARKER_FILE).write_text(artifact._marker_text(None))
    for file, text in (files or {artifact.part_name(0): "PAR1 half written"}).items():
        (folder / file).write_text(text)
    return folder


def test_abandoned_staging_folders_are_removed_and_live_or_foreign_ones_kept(tiny, tmp_path):
    host = socket.gethostname()
    killed = _staging(tmp_path, f".panel.build-{host}-{_dead_pid()}-abcd1234")
    killed_empty = _staging(tmp_path, f".panel.build-{host}-{_dead_pid()}-efgh5678", {})
    keep = [
        _staging(tmp_path, f".panel.build-{host}-{os.getpid()}-live0001"),  # its build is still running
        _staging(tmp_path, f".panel.build-otherhost-{_dead_pid()}-abcd1234"),  # another machine's build
        _staging(tmp_path, f".panel.build-{host}-{_dead_pid()}-user0001", {"notes.txt": "mine"}),  # not ours
        _staging(tmp_path, f".panel.build-{host}-{_dead_pid()}-nomark01", marked=False),  # no marker: not provably ours
        _staging(tmp_path, ".panel.k2j4h5g6"),  # not a staging name (nor are those of builds before the marker)
        _staging(tmp_path, ".panel.backup"),
        _staging(tmp_path, f".other.build-{host}-{_dead_pid()}-abcd1234"),  # another artifact's staging
    ]
    old = time.time() - 25 * 3600
    os.utime(keep[4], (old, old))
    kept = {str(p): snapshot(p) for p in keep}
    removed = artifact.remove_abandoned_staging(tmp_path / "panel")
    assert sorted(removed) == sorted([killed, killed_empty])
    assert {str(p): snapshot(p) for p in keep} == kept
    artifact.save(tiny, tmp_path / "panel")  # save cleans up too, and leaves no staging folder of its own
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
