"""The CLI as a user runs it: classify prints one JSON object per text and stores them; user errors are one line
on stderr with exit code 2; chat labels, replies and stores every turn; the privacy commands work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, db: Path | None = None, stdin: str = "", env: dict | None = None):
    environment = {**os.environ, "AIO_MODEL": "tiny-random", **(env or {})}
    if db is not None:
        environment["AIO_DB_URL"] = f"sqlite:///{db}"
    return subprocess.run([sys.executable, "-m", "aio_core", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, env=environment, timeout=120)


def test_classify_json_one_object_per_text_and_stored(tmp_path):
    db = tmp_path / "aio.db"
    done = run("classify", "今天的实验终于成功了，太棒了！", "这天气真糟糕", "--json", "--person", "amy", db=db)
    assert done.returncode == 0, done.stderr
    objects = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["text"] for o in objects] == ["今天的实验终于成功了，太棒了！", "这天气真糟糕"]
    assert all(o["label"] in ("positive", "negative") and 0.5 <= o["confidence"] <= 1 for o in objects)
    assert "meaningless" in done.stderr  # the tiny model says what it is
    exported = json.loads(run("export-person", "amy", db=db).stdout)
    assert [m["text"] for m in exported["messages"]] == [o["text"] for o in objects]
    assert {m["source"] for m in exported["messages"]} == {"cli"}


@pytest.mark.parametrize("args, env, words", [
    (("--model", "/no/such/model", "classify", "x"), {}, "AIO_MODEL=/no/such/model"),
    (("classify", "x"), {"AIO_DTYPE": "fp8"}, "AIO_DTYPE"),
    (("screen", "/no/such.csv", "--text-column", "t"), {}, "Cannot read such.csv"),
    (("erase-person", "nobody"), {}, "Nobody with the handle"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, args, env, words):
    done = run(*args, db=tmp_path / "aio.db", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and words in done.stderr
    assert "Traceback" not in done.stderr


def test_global_flags_work_before_and_after_the_command(tmp_path):
    before = run("--db", f"sqlite:///{tmp_path / 'a.db'}", "classify", "x", "--json")
    after = run("classify", "x", "--json", "--db", f"sqlite:///{tmp_path / 'b.db'}")
    assert before.returncode == after.returncode == 0
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()


def test_chat_labels_replies_and_stores_every_turn(tmp_path):
    db = tmp_path / "aio.db"
    done = run("chat", "--person", "amy", "--max-new-tokens", "8", db=db, stdin="hello there\n今天很开心\n\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("LLM 情感判断:") == 2 and done.stdout.count("assistant> ") == 2
    exported = json.loads(run("export-person", "amy", db=db).stdout)
    assert [m["text"] for m in exported["messages"]] == ["hello there", "今天很开心"]
    assert all(m["source"] == "chat" and m["label"] and m["reply"] is not None for m in exported["messages"])


def test_erase_person_removes_them(tmp_path):
    db = tmp_path / "aio.db"
    run("classify", "one", "two", "--person", "bo", db=db)
    done = run("erase-person", "bo", db=db)
    assert done.returncode == 0 and "2 messages" in done.stdout
    assert run("export-person", "bo", db=db).returncode == 2


def test_demo_fills_an_empty_store_once(tmp_path):
    db = tmp_path / "aio.db"
    first = run("demo", "--people", "8", "--weeks", "4", db=db)
    assert first.returncode == 0 and "open alert" in first.stdout
    again = run("demo", db=db)
    assert again.returncode == 2 and "only fills an empty store" in again.stderr
