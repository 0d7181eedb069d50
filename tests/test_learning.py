"""Labels that learn, on the tiny model and real files: the head is fitted deterministically, used only on the
weights and prompt it was fitted for, and a person's correction changes what every page, alert and export says
(and can be undone). The texts are written for these tests."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from aio_core.classify import classify
from aio_core.engine import load_engine
from aio_core.errors import UserError
from aio_core.heads import find_head, head_path
from aio_core.workflows.learning import fit_label_head, rescore
from db.alerts import list_alerts
from db.corrections import correct_label, undo_correction
from db.models import LabelVersion, Message
from db.privacy import export_person
from db.reports import overview
from db.session import reading, writing
from db.store import NewMessage, add_messages

GOOD = ("the new library is bright and quiet", "my tutor explained it so clearly", "great match today",
        "the soup was delicious", "i love the art club", "这家店的服务很贴心", "新教室又干净又亮", "周末爬山很开心")
BAD = ("the bus broke down and nobody helped", "my phone died and the repair was a rip-off", "awful cold food",
       "the printer jammed all day", "rude staff at the counter", "快递又丢了，客服不理人", "房间又脏又吵",
       "质量太差了")


def labelled_file(path, domains=("school", "shop")):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "domain"])
        for i, (good, bad) in enumerate(zip(GOOD, BAD, strict=True)):
            writer.writerow([good, "positive", domains[i % 2]])
            writer.writerow([bad, "negative", domains[i % 2]])
    return path


@pytest.fixture
def fitting_engine(engine, tmp_path):
    """The loaded tiny model with heads and the feature cache in this test's own folder."""
    return dataclasses.replace(engine, settings=engine.settings.replace(data_dir=str(tmp_path / "data")))


def test_a_fitted_head_is_deterministic_saved_and_used_by_the_next_engine(fitting_engine, tmp_path):
    data = labelled_file(tmp_path / "train.csv")
    head, path = fit_label_head([data], engine=fitting_engine)
    again, _ = fit_label_head([data], engine=fitting_engine)
    assert again.head_id == head.head_id and path == head_path(fitting_engine.settings.heads_dir,
                                                                fitting_engine.fingerprint,
                                                                fitting_engine.prompt.version)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["head_id"] == head.head_id and set(sidecar["leave_one_domain_out"]) == {"en", "zh"}

    loaded = load_engine(fitting_engine.settings)
    assert loaded.head is not None and loaded.head.head_id == head.head_id
    results = classify(["the canteen was lovely", "店员态度很差"], engine=loaded)
    assert all(r.head_id == head.head_id for r in results)
    assert "learned head" in loaded.labeller
    off = load_engine(fitting_engine.settings.replace(head="off"))
    assert off.head is None and all(r.head_id is None for r in classify(["the canteen was lovely"], engine=off))


def test_a_head_is_never_applied_to_other_weights(fitting_engine, tmp_path):
    head, path = fit_label_head([labelled_file(tmp_path / "train.csv")], engine=fitting_engine)
    folder = fitting_engine.settings.heads_dir
    copied = head_path(folder, "0123456789abcdef", head.prompt_version)
    shutil.copy(path, copied)  # copied by hand under another model's name
    assert find_head(folder, "0123456789abcdef", head.prompt_version) is None
    assert find_head(folder, head.fingerprint, "v1-plain") is None


def test_fitting_needs_two_domains(fitting_engine, tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("text,label\n" + "".join(f"{g},positive\n{b},negative\n" for g, b in zip(GOOD[:5], BAD[:5],
                                                                                            strict=True)))
    with pytest.raises(UserError, match="two domains"):
        fit_label_head([one], engine=fitting_engine)


def test_a_correction_changes_label_alert_and_export_and_undo_restores(db, rule):
    start = datetime(2026, 5, 4, 9)
    rows = [NewMessage(f"day {i}", "chat", person="amy", label="negative", confidence=0.9, p_negative=0.9,
                       uncertain=False, created_at=start + timedelta(days=i)) for i in range(5)]
    with writing(db) as session:
        ids = add_messages(session, rows, rule=rule)
        assert [a.status for a in list_alerts(session)] == ["open"]
    with writing(db) as session:
        corrections = [correct_label(session, i, "positive", by="Ms Lee", rule=rule) for i in ids[:3]]
    with reading(db) as session:
        assert overview(session).negatives == 2
        (alert,) = list_alerts(session)
        assert alert.status == "resolved" and alert.updated_by == "rule"  # withdrawn: the evidence went away
        exported = export_person(session, "amy")
        first = exported["messages"][0]
        assert (first["label"], first["human_label"], first["corrections"][0]["by"]) == ("negative", "positive",
                                                                                       "Ms Lee")
    with writing(db) as session:
        undo_correction(session, corrections[0].id, by="Ms Lee", rule=rule)
    with reading(db) as session:
        assert session.get(Message, ids[0]).human_label is None
        (alert,) = list_alerts(session)
        assert alert.status == "open"  # the same episode comes back


def test_corrections_join_the_fit_and_a_rescore_keeps_the_old_labels(fitting_engine, db, rule, tmp_path):
    rows = [NewMessage(text, "cli", person="bo", label="positive", confidence=0.6, p_negative=0.4, uncertain=True)
            for text in ("the lift is broken again", "the new cafe is great")]
    with writing(db) as session:
        ids = add_messages(session, rows, rule=rule)
        correct_label(session, ids[0], "negative", by="T", rule=rule)
    head, _ = fit_label_head([labelled_file(tmp_path / "train.csv")], engine=fitting_engine, db=db)
    assert head.meta["corrections"] == 1
    engine = load_engine(fitting_engine.settings)
    count, changed = rescore(engine=engine, db=db, by="T", handle="bo")
    assert count == 2 and 0 <= changed <= 2
    with reading(db) as session:
        versions = session.scalars(select(LabelVersion).order_by(LabelVersion.message_id)).all()
        assert [(v.message_id, v.label) for v in versions] == [(ids[0], "positive"), (ids[1], "positive")]
        first = session.get(Message, ids[0])
        assert first.human_label == "negative" and first.head_id == head.head_id  # the correction stays in force
