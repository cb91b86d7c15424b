"""Stage timings (issue 35): nested stages add up by path, and a command writes them only when asked to."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from training.infra import stage_times
from training.infra.stage_times import stage


@pytest.fixture(autouse=True)
def _fresh():
    stage_times.reset()
    yield
    stage_times.reset()


def test_a_stage_inside_another_is_reported_under_it_and_repeats_add_up():
    for _ in range(2):
        with stage("fold"):
            with stage("fit"):
                pass
            stage_times.add("score", 1.5)  # measured elsewhere, nested in the open stage
    totals = stage_times.totals()
    assert list(totals) == ["fold", "fold/fit", "fold/score"]  # a stage before the stages inside it
    assert totals["fold"]["calls"] == 2 and totals["fold/fit"]["calls"] == 2
    assert totals["fold/score"] == {"seconds": 3.0, "calls": 2}
    assert totals["fold"]["seconds"] >= totals["fold/fit"]["seconds"] >= 0


def test_a_stage_that_raises_is_still_timed_and_closed():
    with pytest.raises(ValueError), stage("outer"):
        raise ValueError("boom")
    with stage("next"):
        pass
    assert list(stage_times.totals()) == ["outer", "next"]  # "next" is not nested in the failed "outer"


@pytest.mark.parametrize("asked", [True, False])
def test_the_totals_are_written_at_exit_only_to_the_file_named(tmp_path, asked):
    target = tmp_path / "stages.json"
    env = {k: v for k, v in os.environ.items() if k != stage_times.ENV} | (
        {stage_times.ENV: str(target)} if asked else {}
    )
    code = "from training.infra.stage_times import stage\nwith stage('a'):\n    with stage('b'): pass\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    if asked:
        assert list(json.loads(target.read_text())) == ["a", "a/b"]
    else:
        assert not target.exists()
