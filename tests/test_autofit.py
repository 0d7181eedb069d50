"""Good readers from the first start, on the tiny model with small sets of our own in place of the shipped ones (the
shipped sets take minutes to read): the missing heads are fitted in the background, the process switches to them,
a fit killed half-way carries on where it stopped, someone's own head is never replaced, the dashboard says labels
are zero-shot until the head is ready and then offers to re-score them, and "Learn from corrections" refits with a
k-fold report. The texts are written for these tests."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import dashboard_env, url_of
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from aio_core.classify import classify
from aio_core.engine import get_engine, loaded_engine
from aio_core.head_fit import read_labelled
from aio_core.heads import find_head, shipped_files
from aio_core.settings import Settings
from aio_core.situation import SITUATIONS
from aio_core.workflows import autofit
from aio_core.workflows.learning import fit_label_head
from db.models import Message
from db.privacy import read_audit
from db.rules import AlertRule
from db.session import reading, writing
from db.store import NewMessage, add_messages

ROOT = Path(__file__).resolve().parent.parent

GOOD = ("the new library is bright and quiet", "my tutor explained it so clearly", "great match today",
        "the soup was delicious", "i love the art club", "这家店的服务很贴心", "新教室又干净又亮", "周末爬山很开心")
BAD = ("the bus broke down and nobody helped", "my phone died and the repair was a rip-off", "awful cold food",
       "the printer jammed all day", "rude staff at the counter", "快递又丢了，客服不理人", "房间又脏又吵",
       "质量太差了")
SAID = {"bad_mark": ("got a D on the history test", "历史考试又不及格"),
        "exam_stress": ("exams next week and i can't sleep", "下周就考试了，睡不着"),
        "lonely": ("nobody sat with me at lunch", "午饭没人和我坐"),
        "home_conflict": ("mum and dad were shouting again", "爸妈又吵起来了"),
        "angry_at_someone": ("sam lied about me and i'm furious", "他造谣我，气死了"),
        "sad_loss": ("our dog died yesterday", "我家的狗昨天死了"),
        "worried": ("i'm scared about the dentist tomorrow", "明天看牙医好怕"),
        "tired": ("so tired after practice", "训练完累死了"),
        "proud": ("i finished the whole painting myself", "我自己画完了整幅画"),
        "good_news": ("i got into the team!", "我进校队了！"),
        "bored": ("nothing to do this weekend", "周末好无聊"),
        "question": ("how do i revise for chemistry?", "化学怎么复习？"),
        "small_talk": ("hi, how's it going", "你好呀，最近怎么样")}


def small_sets(folder: Path) -> dict[str, list[Path]]:
    """A label set (two domains, both languages) and a situation set (two sources) in the shipped sets' columns."""
    folder.mkdir(parents=True, exist_ok=True)
    label = folder / "label.csv"
    with label.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "domain"])
        for i, (good, bad) in enumerate(zip(GOOD, BAD, strict=True)):
            writer.writerow([good, "positive", ("school", "shop")[i % 2]])
            writer.writerow([bad, "negative", ("school", "shop")[i % 2]])
    situation = folder / "situation.csv"
    with situation.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "lang", "situation", "source"])
        assert set(SAID) == set(SITUATIONS)
        for name, (en, zh) in SAID.items():
            writer.writerow([en, "en", name, "a"])
            writer.writerow([zh, "zh", name, "b"])
            writer.writerow([en + " today", "en", name, "b"])
            writer.writerow([zh + "啊", "zh", name, "a"])
    return {"risk": [], "label": [label], "situation": [situation]}


def settings_in(folder: Path, **changes) -> Settings:
    return Settings(model="tiny-random", dtype="float32", db_url="sqlite://", risk="phrases", autofit="on",
                    data_dir=str(folder / "data"), **changes)


def test_the_shipped_label_set_holds_both_languages_several_domains_each_documented():
    rows = read_labelled(shipped_files())
    languages = {r.lang for r in rows}
    assert languages == {"en", "zh"}
    for lang in languages:
        mine = [r for r in rows if r.lang == lang]
        assert len({r.domain for r in mine}) >= 4 and len(mine) >= 2000
        assert abs(sum(r.label == "negative" for r in mine) / len(mine) - 0.5) < 0.02
    readme = (shipped_files()[0].parent / "README.md").read_text()
    for path in shipped_files():
        assert path.name in readme  # each file's source and licence is written down


def test_the_shipped_label_set_holds_none_of_the_evaluation_rows():
    rows = read_labelled(shipped_files())
    shared = ROOT.parent / "shared" / "data"
    held_out = {r["text"].strip() for f in shared.glob("*.csv") for r in csv.DictReader(f.open(encoding="utf-8-sig"))}
    if not held_out:
        pytest.skip("../shared/data is not on this machine; the overlap check runs where it is")
    assert not held_out & {r.text.strip() for r in rows}


def test_missing_heads_are_fitted_in_the_background_and_the_process_switches_to_them(tmp_path):
    settings = settings_in(tmp_path)
    sets = small_sets(tmp_path / "sets")
    engine = get_engine(settings)
    assert engine.head is None and autofit.missing(engine) == ["label", "situation"]
    before = classify(["the soup was delicious"], engine=engine)[0]
    assert before.head_id is None  # zero-shot until the head is ready
    assert autofit.start(engine, sets) and not autofit.start(engine, sets)  # one at a time
    assert autofit.wait(settings, timeout=120)
    status = autofit.read_status(settings, engine.fingerprint, engine.prompt.version)
    assert (status.state, status.finished, status.share) == ("done", ["label", "situation"], 1.0)
    now = loaded_engine(settings)
    assert now.head is not None and now.situation_head is not None and now.head.meta["fitting_set"] == "shipped"
    after = classify(["the soup was delicious"], engine=now)[0]
    assert after.head_id == now.head.head_id  # the next label in this process comes from the head
    assert not autofit.start(now, sets) and autofit.missing(now) == []
    # Tied to these weights and this prompt: another prompt version on the same weights has no head.
    other = get_engine(settings.replace(prompt_version="v1-plain"))
    assert other.head is None and "label" in autofit.missing(other)


def test_someone_s_own_head_is_never_replaced_by_the_background_fit(tmp_path):
    settings = settings_in(tmp_path)
    sets = small_sets(tmp_path / "sets")
    engine = get_engine(settings)
    own = tmp_path / "own.csv"
    own.write_text("text,label,domain\n" + "".join(f"{g},positive,{d}\n{b},negative,{d}\n" for g, b, d in
                                                   zip(GOOD[:4], BAD[:4], "abab", strict=True)), encoding="utf-8")
    mine, _ = fit_label_head([own], engine=engine)  # fitted while the engine was loaded without a head
    status = autofit.run(engine, sets=sets)
    assert status.state == "done"
    kept = find_head(settings.heads_dir, engine.fingerprint, engine.prompt.version)
    assert kept.head_id == mine.head_id and kept.meta["fitting_set"] == "own"


RUN_AND_HANG = """
import sys, time
from pathlib import Path
import aio_core.head_fit as domains
from aio_core.engine import load_engine
from aio_core.settings import Settings
from aio_core.workflows import autofit
domains.CACHE_CHUNK = 4
folder = Path(sys.argv[1])
settings = Settings(model="tiny-random", dtype="float32", db_url="sqlite://", risk="phrases", autofit="on",
                    data_dir=str(folder / "data"))
sets = {"risk": [], "label": [folder / "sets" / "label.csv"], "situation": [folder / "sets" / "situation.csv"]}
def hang(status):
    if status.done > 8:  # two chunks of the label set are kept: stop here until killed
        (folder / "killed-here").write_text(str(status.done))
        time.sleep(600)
autofit.run(load_engine(settings), sets=sets, progress=hang)
"""


def test_a_fit_killed_half_way_carries_on_where_it_stopped(tmp_path):
    small_sets(tmp_path / "sets")
    process = subprocess.Popen([sys.executable, "-c", RUN_AND_HANG, str(tmp_path)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "killed-here").exists():
            assert process.poll() is None and time.monotonic() < deadline, "the fit ended before it could be killed"
            time.sleep(0.1)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    settings = settings_in(tmp_path)
    engine = get_engine(settings)
    stopped = autofit.read_status(settings, engine.fingerprint, engine.prompt.version)
    assert stopped.state == "waiting" and stopped.stage == "label"  # its process is gone: it waits for the next start
    seen: list[int] = []
    status = autofit.run(engine, sets=small_sets(tmp_path / "sets"),
                         progress=lambda s: seen.append(s.done) if s.stage == "label" else None)
    assert status.state == "done" and status.finished == ["label", "situation"]
    assert seen and seen[0] > 8  # the 8 texts read before the kill were not read again
    assert loaded_engine(settings).head is not None


def test_the_dashboard_fits_at_first_start_says_labels_are_zero_shot_and_then_offers_a_rescore(db, tmp_path,
                                                                                                monkeypatch):
    dashboard_env(monkeypatch, tmp_path, url_of(db), auth="off", autofit="on")
    sets = small_sets(tmp_path / "sets")
    monkeypatch.setattr(autofit, "shipped_sets", lambda: sets)
    settings = Settings.from_env()
    # Another live process holds the data folder's fit lock at first: this one labels zero-shot meanwhile.
    lock = settings.heads_dir / "autofit.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": autofit.HOST}))
    chat = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    chat.switch_page("app_pages/chat.py").run()  # the first page that loads the model
    assert not chat.exception
    assert any("labels: zero-shot" in c.value for c in chat.caption)
    chat.selectbox(key="person").select("\x00new").run()
    chat.text_input(key="new_handle").input("ana").run()
    chat.chat_input(key="chat_input").set_value("the soup was delicious").run()
    assert not chat.exception
    assert autofit.wait(settings, timeout=120)
    with reading(db) as session:
        assert session.scalars(select(Message)).one().head_id is None
    assert loaded_engine(settings).head is None
    lock.unlink()  # that process is done: the next page view starts the fit here
    overview = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    assert not overview.exception
    assert autofit.wait(settings, timeout=120)
    overview.run()
    assert any("labels: learned head (fitted on the shipped set)" in c.value for c in overview.caption)
    assert any("1 stored messages were labelled zero-shot" in i.value for i in overview.info)
    overview.button(key="rescore_zero_shot").click().run()
    assert not overview.exception
    with reading(db) as session:
        assert session.scalars(select(Message)).one().head_id == loaded_engine(settings).head.head_id
    assert not any("labelled zero-shot" in i.value for i in overview.info)
    assert any("Re-scored 1 messages" in s.value for s in overview.success)


def test_learn_from_corrections_refits_and_reports_on_corrections_it_did_not_see(db, tmp_path, monkeypatch):
    dashboard_env(monkeypatch, tmp_path, url_of(db), auth="off")
    sets = small_sets(tmp_path / "sets")
    settings = Settings.from_env()
    engine = get_engine(settings)
    fit_label_head(sets["label"], engine=engine)  # the head in force, fitted on "your own" file
    from aio_core.engine import refresh_heads
    from db.corrections import correct_label

    engine = refresh_heads(settings)
    texts = [f"{word} again at the club" for word in ("lunch", "music", "games", "rain", "bus", "maths", "art",
                                                      "news", "snow", "film", "chess", "choir")]
    labels = classify(texts, engine=engine)
    start = datetime(2026, 5, 1, 9)
    with writing(db) as session:
        ids = [add_messages(session, [NewMessage(text, "chat", person="kim", label=s.label, confidence=s.confidence,
                                                 p_negative=s.p_negative, uncertain=s.uncertain, head_id=s.head_id,
                                                 created_at=start + timedelta(hours=i))], rule=AlertRule())[0]
               for i, (text, s) in enumerate(zip(texts, labels, strict=True))]
    with writing(db) as session:
        for message_id in ids:  # the school reads every one of these as negative, whatever the model said
            correct_label(session, message_id, "negative", by="ms lee", rule=AlertRule())
    admin = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    admin.switch_page("app_pages/admin.py").run()
    assert not admin.exception
    admin.button(key="learn").click().run()
    assert not admin.exception, admin.exception
    said = " ".join(s.value for s in admin.success)
    assert "On corrections it was not fitted on" in said and "12 corrections, 5-fold" in said
    curve = next(d.value for d in admin.dataframe if "corrections fitted on" in d.value.columns)
    assert list(curve["corrections fitted on"])[0] == 0 and list(curve["corrections fitted on"])[-1] == 10
    now = loaded_engine(settings)
    assert now.head.meta["corrections"] == 12 and now.head.meta["fitting_set"] == "own"
    # Taught "negative" twelve times, five times the weight of a file row: the refit labels them so.
    negative_before = sum(s.label == "negative" for s in labels)
    assert negative_before < len(texts)  # else there would be nothing to learn
    assert sum(s.label == "negative" for s in classify(texts, engine=now)) > negative_before
    sidecar = json.loads(autofit.status_path(settings, now.fingerprint, now.prompt.version).with_name(
        f"{now.fingerprint}__{now.prompt.version}.json").read_text())
    assert sidecar["head_id"] == now.head.head_id
    with reading(db) as session:
        (event,) = read_audit(session, action="head.learn")
    assert event.target == now.head.head_id and event.detail.startswith("12 corrections; 5-fold")


def test_the_progress_says_labels_are_zero_shot_only_while_the_label_head_is_missing(db, tmp_path, monkeypatch):
    dashboard_env(monkeypatch, tmp_path, url_of(db), auth="off")
    settings = Settings.from_env()
    engine = get_engine(settings)
    lock = settings.heads_dir / "autofit.lock"  # a live process fits, this one reads its status file
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": autofit.HOST}))

    def shown(stages: list[str], finished: list[str]) -> str:
        status = autofit.FitStatus(engine.fingerprint, engine.prompt.version, state="running", stages=stages,
                                   stage=next(s for s in stages if s not in finished), finished=finished,
                                   done=10, total=100)
        autofit.status_path(settings, engine.fingerprint, engine.prompt.version).write_text(
            json.dumps(dataclasses.asdict(status)))
        at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
        assert not at.exception
        (bar,) = [e for e in at.get("progress")]
        return bar.proto.text

    during = shown(["risk", "label", "situation"], [])
    assert "(risk head; 3% of all)" in during and "Labels are zero-shot" in during and "phrase list" in during
    after_label = shown(["risk", "label", "situation"], ["risk", "label"])
    assert "(situation head" in after_label and "zero-shot" not in after_label and "phrase list" not in after_label
