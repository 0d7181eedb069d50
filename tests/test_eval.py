"""The `eval` command: its report adds up, its JSON comes last, bad files exit 2 with one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aio_core.errors import UserError
from aio_core.measure.evaluate import evaluate, read_labelled

ROOT = Path(__file__).resolve().parent.parent
ROWS = ("text,label,lang\n今天很开心,positive,zh\n这天气真糟糕,negative,zh\nI love it,positive,en\n"
        "worst ever,negative,en\nthe bus leaves at 9,neutral,en\nok then,positive,\n")


def test_report_adds_up(tmp_path, engine):
    path = tmp_path / "e.csv"
    path.write_text(ROWS)
    report = evaluate(path, engine=engine)
    assert report["n"] == 6
    assert {lang: v["n"] for lang, v in report["by_lang"].items()} == {"en": 4, "zh": 2}  # blank lang: detected
    for label, cells in report["confusion"].items():
        assert cells["positive"] + cells["negative"] == report["by_label"][label]["n"]
        assert cells["uncertain"] <= report["by_label"][label]["n"]
    right = sum(v["accuracy"] * v["n"] for v in report["by_label"].values())
    assert report["accuracy"] == pytest.approx(right / 6)
    assert report["prompt_version"] == engine.prompt.version and report["model"] == "tiny-random"


@pytest.mark.parametrize("content, words", [
    ("words,label\nx,positive\n", "lacks the column(s) text"),
    ("text,label\nx,positive\ny,happy\nz,Negative\n", "line 3: 'happy'"),
])
def test_bad_evaluation_files_are_refused(tmp_path, content, words):
    path = tmp_path / "e.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=re.escape(words)):
        read_labelled(path)


def test_eval_command_json_is_the_last_line_and_bad_files_exit_2(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(ROWS)
    command = [sys.executable, "-m", "aio_core", "--model", "tiny-random", "eval"]
    done = subprocess.run(command + [str(path), "--json"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report) >= {"accuracy", "n", "by_lang", "by_label", "confusion", "ms_per_item", "model",
                           "prompt_version"}
    assert "accuracy" in done.stdout.splitlines()[1]
    (tmp_path / "bad.csv").write_text("text\nonly text\n")
    bad = subprocess.run(command + [str(tmp_path / "bad.csv")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "label" in bad.stderr


def test_seed_method_can_be_evaluated_as_a_baseline(tmp_path, engine):
    path = tmp_path / "e.csv"
    path.write_text(ROWS)
    report = evaluate(path, engine=engine, method="seed")
    assert report["prompt_version"] == "seed"
    assert report["confusion"]["negative"]["positive"] == 2  # as written it always answers positive
    assert report["by_label"]["negative"]["accuracy"] == 0.0
