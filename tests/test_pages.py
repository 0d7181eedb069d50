"""Every page through Streamlit's AppTest, with the tiny model and a temporary database: what a user sees, and
what ends up stored."""

from __future__ import annotations

import csv
import json
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from helpers import dashboard_env, frame, screened, url_of, values
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db.alerts import list_alerts
from db.jobs import list_jobs
from db.models import Alert, AlertEvent, Message
from db.rules import AlertRule
from db.session import reading, writing
from db.store import NewMessage, add_messages, set_reply

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_env(db, tmp_path, monkeypatch):
    """The dashboard without sign-in (roles have their own tests, test_access.py), uploads up to 1 MB."""
    dashboard_env(monkeypatch, tmp_path, url_of(db), upload_mb="1", auth="off")
    return db


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    if name != "overview":
        at.switch_page(f"app_pages/{name}.py").run()
    assert not at.exception
    return at


def seed_person(db, handle: str, labels: str) -> None:
    start = datetime(2026, 4, 1, 9)
    with writing(db) as session:
        for i, c in enumerate(labels):
            add_messages(session, [NewMessage(f"{handle} says {i}", "chat", person=handle,
                                              label="negative" if c == "-" else "positive", confidence=0.9,
                                              p_negative=0.9 if c == "-" else 0.1, uncertain=False,
                                              created_at=start + timedelta(days=i))], rule=AlertRule())


def test_overview_on_an_empty_store_offers_the_demo_and_fills_it(app_env):
    at = open_page("overview")
    assert [m.value for m in at.metric][:1] == ["0"]
    at.button(key="fill_demo").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Messages stored"].replace(",", "")) > 100 and int(metrics["Open alerts"]) > 0
    assert any("Stored a simulated class" in s for s in values(at.success))  # the fill says what it did
    assert any("Demo" in str(v) for v in at.dataframe[0].value.iloc[:, 0])


def test_chat_stores_the_turn_and_shows_its_label(app_env):
    at = open_page("chat")
    at.selectbox(key="person").set_value("\x00new").run()
    at.text_input(key="new_handle").set_value("amy").run()
    at.chat_input(key="chat_input").set_value("今天的实验终于成功了，太棒了！").run()
    assert not at.exception
    shown = values(at.markdown)
    # The seed's line in the reader's language (it was Chinese to an English reader); exactly the seed's in Chinese.
    assert any(v in ("😄 LLM sentiment: positive", "😞 LLM sentiment: negative") for v in shown), shown
    assert not any("情感判断" in v for v in shown)
    assert any("positive" in c or "negative" in c for c in values(at.caption))
    assert any("meaningless" in w for w in values(at.warning))  # the tiny model says what it is
    # Named as itself, not as the Qwen2 family its profile borrows; how it runs in words; no path to show.
    assert any(re.fullmatch(r"Model: tiny-random · built in-process, b?float\d+, CPU · labels: zero-shot \(no label "
                            r"head for these weights yet\)", c.replace("\\", ""))
               for c in values(at.caption)), values(at.caption)
    with reading(app_env) as session:
        (message,) = session.scalars(select(Message)).all()
        assert message.text == "今天的实验终于成功了，太棒了！" and message.person.handle == "amy"
        assert message.label in ("positive", "negative") and message.reply is not None


def test_chat_text_is_never_rendered_as_html_or_links(app_env):
    at = open_page("chat")
    at.selectbox(key="person").set_value("\x00new").run()
    at.text_input(key="new_handle").set_value("eve").run()
    attack = "<img src=x onerror=alert(1)> [click](javascript:alert(2)) :red[x] $x^2$"
    at.chat_input(key="chat_input").set_value(attack).run()
    rendered = next(v for v in values(at.markdown) if "img" in v)
    assert re.search(r"(?<!\\)[<>\[\]()$:=]", rendered) is None  # every markup character escaped
    assert rendered.replace("\\", "") == attack  # and shown exactly as typed (the browser test checks rendering)


def test_screening_a_csv_stores_its_rows_and_offers_the_download(app_env):
    at = open_page("screen")
    content = "author,comment,posted\namy,太好吃了,2026-05-01 10:00\nbo,=HYPERLINK(\"x\"),2026-05-02 10:00\n" \
              "cy,,2026-05-03 10:00\n"
    at.file_uploader(key="upload").upload("comments.csv", content.encode(), "text/csv").run()
    assert not at.exception
    assert (at.selectbox(key="text_column").value, at.selectbox(key="person_column").value,
            at.selectbox(key="time_column").value) == ("comment", "author", "posted")  # guessed
    screened(at, app_env)
    assert not at.exception and any("Screened 3 rows" in s for s in values(at.success))
    with reading(app_env) as session:
        stored = session.scalars(select(Message).order_by(Message.row_index)).all()
    assert [m.text for m in stored] == ["太好吃了", '=HYPERLINK("x")']  # verbatim; the blank row is skipped
    assert len(at.get("download_button")) == 1
    results = frame(at, "text", "flagged")
    assert list(results["text"]) == ["太好吃了", '=HYPERLINK("x")']
    at.toggle(key="flagged_only").set_value(True).run()
    assert all(frame(at, "text", "flagged")["flagged"])


def platform_export(path: Path, rows: int = 8) -> Path:
    """A comment export as platforms write it: ids, a platform name, the author, a time named like a post, the
    comment, and a count."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "platform", "author", "posted_at", "comment", "likes"])
        for i in range(rows):
            how = "late again and nobody answered" if i % 2 else "quick, thanks a lot"
            writer.writerow([1000 + i, "weibo" if i % 2 else "douyin", f"user{i % 3}",
                             f"2026-05-{1 + i:02d}T10:{i:02d}:00Z", f"comment number {i}: the delivery was {how}",
                             i * 3])
    return path


def test_columns_are_guessed_from_the_cells_and_the_text_is_sampled_before_screening(app_env, tmp_path):
    """`posted_at` once looked like the text (its name has "post") and the time was not found."""
    source = platform_export(tmp_path / "export.csv")
    at = open_page("screen")
    at.file_uploader(key="upload").upload("export.csv", source.read_bytes(), "text/csv").run()
    assert not at.exception
    assert (at.selectbox(key="text_column").value, at.selectbox(key="person_column").value,
            at.selectbox(key="time_column").value) == ("comment", "author", "posted_at")
    sample = next(c for c in values(at.caption) if "First texts of comment" in c).replace("\\", "")  # escaped
    assert all(f"comment number {i}:" in sample for i in range(3)) and "comment number 3" not in sample
    at.selectbox(key="text_column").set_value("platform").run()  # the sample follows the reader's choice
    assert any("First texts of platform" in c and "douyin" in c for c in values(at.caption))


def test_a_cancel_reports_what_is_kept_in_the_number_the_progress_showed(app_env, tmp_path, monkeypatch):
    """The bar once counted rows labelled (64) and the cancel message rows stored ("after 0 of 500 rows"): now the
    bar counts the rows stored in whole chunks, the cancel reports that same number, and it is what the store holds."""
    monkeypatch.setenv("AIO_BATCH_SIZE", "1")  # one text per forward pass: a job slow enough to watch mid-chunk
    from aio_core.workflows.screening import CHUNK_ROWS
    from db.models import Batch

    total = 8 * CHUNK_ROWS  # long enough that the job is still running whenever the test first looks
    source = platform_export(tmp_path / "big.csv", rows=total)
    at = open_page("screen")
    at.file_uploader(key="upload").upload("big.csv", source.read_bytes(), "text/csv").run()
    at.button(key="run").click().run()
    assert not at.exception
    deadline, shown = time.monotonic() + 120, None
    while shown is None and time.monotonic() < deadline:
        with reading(app_env) as session:
            running = list_jobs(session)
            assert running, f"no job running: {values(at.error)} {list_jobs(session, active=False)}"
            (job,) = running
            before = session.scalar(select(Batch.rows_done))
        if job.rows_done % CHUNK_ROWS == 0 or job.rows_per_second is None:
            time.sleep(0.05)  # wait until labelling runs ahead of the last stored chunk
            continue
        at.run()
        with reading(app_env) as session:
            after = session.scalar(select(Batch.rows_done))
        if before == after:  # no chunk landed while the page was drawn: the page saw exactly `before` stored
            bar = at.get("progress")[0].proto
            shown = int(re.search(r"([\d,]+) of [\d,]+ rows", bar.text).group(1).replace(",", ""))
            assert shown == before and bar.value == int(100 * before / total)
    assert shown is not None, "never saw the job between two chunks"
    at.button(key=f"cancel_job_{job.id}").click().run()
    deadline = time.monotonic() + 60
    while list_jobs_now(app_env) and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()
    (said,) = [i for i in values(at.info) if "cancelled" in i]
    with reading(app_env) as session:
        kept = session.scalar(select(func.count(Message.id)))
    assert f"cancelled with {kept:,} of {total:,} rows stored" in said and kept % CHUNK_ROWS == 0
    assert kept >= shown and f"carries on from row {kept + 1:,}" in said


def list_jobs_now(db) -> list:
    with reading(db) as session:
        return list_jobs(session)


def test_commenters_stay_out_of_overview_and_trends_unless_asked_for(app_env, tmp_path, engine):
    """Uploaded comments' authors once stood beside students in "Risk alerts: look now" and the People count."""
    from aio_core.workflows.screening import ScreenOptions, screen_file

    seed_person(app_env, "sad", "------")
    seed_person(app_env, "fine", "+-+")
    source = tmp_path / "comments.csv"
    source.write_text("author,comment,posted\nmallory,I want to kill myself,2026-04-02 10:00\n"
                      "troll,this is terrible and awful,2026-04-03 10:00\ntroll,awful awful,2026-04-04 10:00\n",
                      encoding="utf-8")
    screen_file(source, ScreenOptions("comment", "author", "posted"), engine=engine, db=app_env)
    with reading(app_env) as session:
        assert session.scalar(select(func.count(Alert.id)).where(Alert.kind == "risk")) == 1  # the commenter's

    def shown_handles(at: AppTest) -> set[str]:
        return {str(h) for d in at.dataframe if "handle" in d.value.columns for h in d.value["handle"]}

    at = open_page("overview")
    assert {m.label: m.value for m in at.metric}["People"] == "2"
    assert shown_handles(at) == {"sad", "fine"} and not any(s.value == "Risk alerts: look now" for s in at.subheader)
    at.toggle(key="overview_commenters").set_value(True).run()  # asked for: there they are, apart by handle
    assert {m.label: m.value for m in at.metric}["People"] == "4"
    assert "comment:mallory" in shown_handles(at) and any(s.value == "Risk alerts: look now" for s in at.subheader)

    at = open_page("trends")
    assert set(frame(at, "handle")["handle"]) == {"sad", "fine"}
    cells = " ".join(str(v) for d in at.dataframe for v in d.value.astype(str).values.ravel())
    assert "mallory" not in cells and "troll" not in cells  # nor in the alerts table
    at.toggle(key="trends_commenters").set_value(True).run()
    assert {"comment:mallory", "comment:troll"} <= set(frame(at, "handle")["handle"])


def test_a_re_uploaded_file_shows_every_row_reusing_the_labels_already_stored(app_env):
    """The same comments in a GBK-encoded copy (other bytes, so another batch) once showed and downloaded only the
    rows labelled now; every row of the file is now there, in file order, the stored ones with their stored labels,
    and nothing is labelled or stored twice."""
    from aio_core.workflows.exports import batch_export
    from db.models import Batch

    lines = [f"user{i % 4},第{i}条评论：这家店{'很好' if i % 3 else '太差了'},2026-05-{1 + i:02d} 10:00"
             for i in range(9)]
    at = open_page("screen")
    first = "author,comment,posted\n" + "\n".join(lines[:6]) + "\n"
    at.file_uploader(key="upload").upload("week1.csv", first.encode("utf-8"), "text/csv").run()
    screened(at, app_env)
    with reading(app_env) as session:
        before = {m.row_index: (m.id, m.label, m.confidence) for m in session.scalars(select(Message))}
    again = "author,comment,posted\n" + "\n".join([lines[6], *lines[:6], lines[7], lines[8]]) + "\n"
    at.file_uploader(key="upload").upload("week1-gbk.csv", again.encode("gbk"), "text/csv").run()
    screened(at, app_env)
    assert not at.exception
    said = [s.replace("\\", "") for s in values(at.success) if "week1-gbk.csv" in s]  # markdown-escaped
    assert said and "9 rows: 3 labelled now, 6 already stored from an earlier upload (their labels reused)" in said[0]
    with reading(app_env) as session:
        assert session.scalar(select(func.count(Message.id))) == 9  # each comment stored once
        batch_id = session.scalar(select(func.max(Batch.id)))
    shown = frame(at, "text", "flagged")
    assert list(shown["row"]) == list(range(1, 10))
    assert [t.split("：")[0] for t in shown["text"]] == [f"第{i}条评论" for i in (6, 0, 1, 2, 3, 4, 5, 7, 8)]
    for row, old in zip(range(2, 8), range(1, 7), strict=True):  # the stored labels, not new ones
        stored_id, label, confidence = before[old]
        assert (shown["label"][row - 1], shown["confidence"][row - 1]) == (label, confidence)
    download = [line.split(",") for line in batch_export(app_env, batch_id).data.decode("utf-8-sig").splitlines()]
    assert download[0][:3] == ["author", "comment", "posted"] and len(download) == 10
    assert [r[1].split("：")[0] for r in download[1:]] == [f"第{i}条评论" for i in (6, 0, 1, 2, 3, 4, 5, 7, 8)]
    assert all(r[3] in ("positive", "negative") for r in download[1:])


def test_a_file_over_the_upload_limit_is_refused_with_a_sentence(app_env):
    at = open_page("screen")
    big = b"text\n" + b"x" * (1024 * 1024 + 10) + b"\n"
    at.file_uploader(key="upload").upload("big.csv", big, "text/csv").run()
    assert any("over the 1 MB limit" in e for e in values(at.error))
    with reading(app_env) as session:
        assert session.scalars(select(Message)).all() == []


def test_a_broken_csv_is_one_sentence_not_a_traceback(app_env):
    at = open_page("screen")
    at.file_uploader(key="upload").upload("bad.csv", b"a,b\n1,2\n3,4,5\n", "text/csv").run()
    assert not at.exception and any("line 3" in e for e in values(at.error))


def test_trends_flags_a_sustained_negative_person_and_acknowledging_persists(app_env):
    seed_person(app_env, "calm", "++++++")
    seed_person(app_env, "sad", "++------")
    at = open_page("trends")
    assert frame(at, "handle", "negative")["handle"].iloc[0] == "sad"
    alerts = frame(at, "id", "status", "rule")
    assert len(alerts) == 1 and alerts["status"].iloc[0] == "open"
    at.text_area(key="alert_note").set_value("talked after class").run()
    at.button(key="alert_acknowledged").click().run()
    assert not at.exception
    with reading(app_env) as session:
        alert = session.scalars(select(Alert)).one()
        # The person acting is the signed-in user (here the single local user), never a typed name.
        assert (alert.status, alert.updated_by, alert.note) == ("acknowledged", "Local user (local)",
                                                                "talked after class")
        assert session.scalars(select(AlertEvent.to_status).order_by(AlertEvent.id)).all() == ["open",
                                                                                             "acknowledged"]


def test_without_a_model_chat_says_why_stores_unlabelled_and_other_pages_work(app_env, monkeypatch):
    monkeypatch.setenv("AIO_MODEL", "/models/not-here")
    at = open_page("chat")
    assert any("AIO_MODEL=/models/not-here" in e for e in values(at.error))
    at.selectbox(key="person").set_value("\x00new").run()
    at.text_input(key="new_handle").set_value("amy").run()
    at.chat_input(key="chat_input").set_value("is anyone there?").run()
    assert not at.exception
    with reading(app_env) as session:
        message = session.scalars(select(Message)).one()
        assert message.text == "is anyone there?" and message.label is None
    overview = open_page("overview")
    assert sum("no model was available" in w for w in values(overview.warning)) == 1  # said once
    screen = open_page("screen")  # before anything is uploaded or pressed
    assert any("AIO_MODEL=/models/not-here" in e for e in values(screen.error))
    seed_person(app_env, "sad", "------")
    assert not open_page("trends").exception


def test_chinese_interface(app_env):
    at = open_page("overview")
    at.selectbox(key="lang_picker").set_value("zh").run()
    assert not at.exception
    assert [m.label for m in at.metric][0] == "已存消息"


# Latin words a Chinese page may show: names of things (the model, file formats, the interface's own bilingual
# language picker) and settings' names, never a word of a sentence.
NOT_ENGLISH = {"Language", "English", "LLM", "CSV", "JSON", "Webhook", "UTC", "CPU", "MB", "float32", "bfloat16",
               "GGUF", "README", "tiny-random", "localhost",
               "Local", "user", "local"}  # "Local user (local)": the viewer's name


def shown_texts(at: AppTest) -> list[str]:
    """Everything a user reads on the page: texts, labels, options, placeholders, and every table's headers and
    cells (charts aside: their axes are checked on their own)."""
    from google.protobuf.json_format import MessageToDict

    found: list[str] = []

    def walk(node) -> None:
        for child in getattr(node, "children", {}).values():
            walk(child)
        proto = getattr(node, "proto", None)
        if proto is None or node.type in ("arrow_vega_lite_chart", "vega_lite_chart"):
            return
        if node.type in ("arrow_data_frame", "dataframe"):
            frame = node.value
            found.extend(str(c) for c in frame.columns)
            found.extend(str(v) for v in frame.values.ravel() if not pd.isna(v))  # a blank cell shows nothing
            return
        fields = MessageToDict(proto)
        for key in ("body", "label", "placeholder", "options", "help", "text", "caption"):
            value = fields.get(key)
            found.extend(value if isinstance(value, list) else [value] if isinstance(value, str) else [])
        if node.type == "multiselect" and not proto.placeholder:
            found.append("Choose options")  # what Streamlit's own frontend writes in an empty placeholder
    walk(at._tree)
    return found


def english_in(texts: list[str], also_allowed: set[str] = frozenset()) -> list[str]:
    """The Latin words of sentences among `texts` (not names of things, not settings)."""
    english = []
    for text in texts:
        text = re.sub(r"AIO_[A-Z_]+(=[\w-]+)?|\d{4}-\d\d-\d\d[ T][\d:.]+", "", text)
        english += [w for w in re.findall(r"[A-Za-z][A-Za-z0-9._-]*[A-Za-z0-9]", text)
                    if w not in NOT_ENGLISH | also_allowed]
    return english


def test_chinese_mode_shows_no_english_of_ours_on_any_page(app_env, monkeypatch):
    """In 中文 mode, statuses, the rule that fired, the notes the product wrote in an alert's history ("urgent
    (self-harm), message 7" by "rule"), risk "none", correction choices, the model line, audit actions and
    Streamlit's "Choose options" were English. Every text of every page is read here; only names of things pass."""
    from db.alerts import transition_alert

    monkeypatch.setenv("AIO_UI_LANG", "zh")  # each page opened in Chinese (the picker's own test is above)
    start = datetime(2026, 4, 1, 9)
    with writing(app_env) as session:
        add_messages(session, [NewMessage(f"今天很难过 {i}", "chat", person="小红", display_name="小红",
                                          label="negative", confidence=0.9, p_negative=0.9, uncertain=False,
                                          created_at=start + timedelta(days=i)) for i in range(6)]
                     + [NewMessage("我不想活了", "chat", person="小明", label="negative", confidence=0.9,
                                   p_negative=0.9, uncertain=False, risk="urgent", risk_category="self-harm",
                                   created_at=start)], rule=AlertRule())
    with writing(app_env) as session:  # a person's step in the risk alert's history, beside the rule's
        transition_alert(session, 1, "acknowledged", by="王老师", note="已联系家长")
    at = open_page("overview")
    assert english_in(shown_texts(at)) == []
    # Each page in an AppTest of its own: after its first run AppTest cannot run again a page whose radio shows
    # translated options (it looks the untranslated value up among the translated labels), as Trends' has.
    at = open_page("trends")
    texts = shown_texts(at)
    assert any("紧急（自伤/自杀），消息" in x for x in texts), texts  # the rule's note, read back in Chinese
    assert any("最近 5 条消息中 4 条负面" in x for x in texts), texts  # the rule that fired
    assert english_in(texts) == []
    headers = [c for d in at.dataframe for c in d.value.columns]
    assert "原状态" in headers and "新状态" in headers
    at = open_page("chat")
    at.selectbox(key="person").set_value("小红").run()
    texts = shown_texts(at)
    assert "😞 LLM 情感判断: 负面" in texts  # the seed's own line, exactly
    assert english_in(texts) == []
    assert english_in(shown_texts(open_page("screen"))) == []
    at = open_page("admin")
    audit = frame(at, "操作", "说明")
    assert "查看了某人的页面" in set(audit["说明"])  # view.person, described
    # The action's own name stays beside its description (the CLI filters on it), and the log's other columns are
    # what was recorded: who, on what, and the detail.
    recorded = {str(v) for column in ("操作", "操作人", "对象", "详情") for v in audit[column]}
    assert english_in(shown_texts(at), recorded) == []
    # The Screen results table is not checked here: AppTest cannot run a page whose radio shows translated options
    # (it looks the untranslated value up among the translated labels), which the correction form under it has.


def test_a_correction_on_trends_is_stored_with_who_and_changes_the_counts(app_env):
    seed_person(app_env, "sad", "------")
    at = open_page("trends")
    assert frame(at, "handle", "negative")["negative"].iloc[0] == 6
    choices = at.selectbox(key="trend_fix_message").options
    assert len(choices) == 6
    at.radio(key="trend_fix_label").set_value("positive").run()
    at.button(key="trend_fix_save").click().run()
    assert not at.exception and any("the model's label is kept" in s for s in values(at.success))
    at.run()
    assert frame(at, "handle", "negative")["negative"].iloc[0] == 5
    with reading(app_env) as session:
        corrected = session.scalars(select(Message).where(Message.human_label.is_not(None))).one()
        assert (corrected.label, corrected.human_label, corrected.corrections[0].by) == ("negative", "positive",
                                                                                        "Local user (local)")


def test_a_correction_from_the_chat_badge_opens_the_alert_at_once(app_env):
    seed_person(app_env, "lou", "+-+-+")  # 2 of 5 negative: neither rule (4 of the last 5; 60% in 7 days) is met
    with reading(app_env) as session:
        assert not list_alerts(session)
    at = open_page("chat")
    at.selectbox(key="person").set_value("lou").run()
    choices = at.selectbox(key="chat_fix_message").options
    assert len(choices) == 5 and "lou says 2" in choices[2]  # newest first
    with reading(app_env) as session:
        chosen = session.scalars(select(Message.id).where(Message.text == "lou says 2")).one()
    at.selectbox(key="chat_fix_message").set_value(chosen).run()
    at.radio(key="chat_fix_label").set_value("negative").run()
    at.button(key="chat_fix_save").click().run()
    assert not at.exception and any("the model's label is kept" in s for s in values(at.success))
    with reading(app_env) as session:
        (alert,) = list_alerts(session)
        corrected = session.scalars(select(Message).where(Message.human_label.is_not(None))).one()
    assert alert.person.handle == "lou" and alert.status == "open"
    assert (corrected.text, corrected.label, corrected.human_label) == ("lou says 2", "positive", "negative")


def test_a_risk_review_on_trends_opens_and_closes_the_messages_alert_at_once(app_env):
    seed_person(app_env, "kit", "+-+")
    at = open_page("trends")
    assert "kit says 1" in " ".join(at.selectbox(key="trend_risk_message").options)
    with reading(app_env) as session:
        newest = session.scalars(select(Message).order_by(Message.created_at.desc())).first().id
    at.selectbox(key="trend_risk_message").set_value(newest).run()
    at.radio(key="trend_risk_level").set_value("urgent").run()
    at.selectbox(key="trend_risk_category").set_value("abuse").run()
    at.text_input(key="trend_risk_note").input("said more in person").run()
    at.button(key="trend_risk_save").click().run()
    assert not at.exception and any("alert follows at once" in s for s in values(at.success))
    with reading(app_env) as session:
        (alert,) = session.scalars(select(Alert).where(Alert.kind == "risk")).all()
        assert (alert.message_id, alert.severity, alert.category, alert.status) == (newest, "urgent", "abuse", "open")
        assert "said more in person" in alert.events[0].note
    at.run()
    assert any("abuse" in str(v) for v in frame(at, "status").astype(str).values.ravel())  # the alert is listed
    at.radio(key="trend_risk_level").set_value("none").run()
    at.button(key="trend_risk_save").click().run()
    with reading(app_env) as session:
        assert session.scalars(select(Alert.status).where(Alert.kind == "risk")).all() == ["resolved"]
        assert session.get(Message, newest).human_risk == "none"


def test_the_screen_table_follows_the_chosen_order_and_filter_from_the_store(app_env):
    """The table once sorted a page copy while the download came from the store; both are now one query."""
    at = open_page("screen")
    content = "comment\nlovely day\nI want to kill myself\nit was fine\nterrible service\n"
    at.file_uploader(key="upload").upload("c.csv", content.encode(), "text/csv").run()
    screened(at, app_env)
    at.selectbox(key="sort").set_value("risk").run()
    assert not at.exception
    shown = frame(at, "text", "risk")
    assert shown["text"].iloc[0] == "I want to kill myself" and shown["risk"].iloc[0] == "urgent"
    at.toggle(key="flagged_only").set_value(True).run()
    shown = frame(at, "text", "flagged")
    assert all(shown["flagged"]) and "I want to kill myself" in list(shown["text"])


def test_the_results_shown_are_those_of_the_batch_just_screened(app_env):
    at = open_page("screen")
    for name, content in (("first.csv", "comment\nfine\nbad\n"), ("second.csv", "comment\nlovely\n")):
        at.file_uploader(key="upload").upload(name, content.encode(), "text/csv").run()
        screened(at, app_env)
        assert not at.exception
    assert any("second.csv" in s.value for s in at.subheader)
    assert list(frame(at, "text", "flagged")["text"]) == ["lovely"]


def test_acting_on_an_alert_shows_the_new_state_at_once_and_clears_the_note(app_env):
    seed_person(app_env, "sad", "------")
    seed_person(app_env, "also", "------")
    at = open_page("trends")
    viewed = at.selectbox(key="trend_person").value
    first = at.selectbox(key="alert_id").value
    with reading(app_env) as session:
        assert session.get(Alert, first).person.handle == viewed  # the viewed person's alert comes first
    at.text_area(key="alert_note").set_value("called home").run()
    at.button(key="alert_acknowledged").click().run()
    assert not at.exception
    table = frame(at, "id", "status")
    assert table.loc[table["id"] == first, "status"].iloc[0] == "acknowledged"
    assert at.text_area(key="alert_note").value == ""
    assert any("is now acknowledged" in s.value for s in at.success)


def test_after_an_action_the_alert_picker_shows_the_alerts_new_status(app_env):
    """The browser keeps a select box's chosen label, not its value: unless the page sends the new label with the
    next run, the picker still reads "#1 sad (open)" beside a table that says acknowledged."""
    seed_person(app_env, "sad", "------")
    at = open_page("trends")
    assert at.selectbox(key="alert_id").options == ["#1 sad (open)"]
    at.button(key="alert_acknowledged").click().run()
    picker = at.selectbox(key="alert_id").proto
    assert list(picker.options) == ["#1 sad (acknowledged)"]
    assert picker.set_value and picker.raw_value == "#1 sad (acknowledged)"  # what the browser will show


def test_the_language_choice_holds_on_every_page(app_env):
    at = open_page("overview")
    at.selectbox(key="lang_picker").set_value("zh").run()
    for name, title in (("trends", "趋势与预警"), ("screen", "评论筛查"), ("chat", "聊天")):
        at.switch_page(f"app_pages/{name}.py").run()
        assert at.title[0].value == title


def test_chat_starts_on_no_one_and_keeps_a_message_typed_before_choosing(app_env):
    seed_person(app_env, "amy", "++")
    at = open_page("chat")
    assert at.selectbox(key="person").value is None
    assert not [m for m in at.chat_message]  # nobody's history is shown before someone is chosen
    at.chat_input(key="chat_input").set_value("hello there").run()
    assert any("Your message is kept" in i.value for i in at.info)
    at.selectbox(key="person").set_value("amy").run()
    assert not at.exception
    with reading(app_env) as session:
        assert session.scalars(select(Message.text).where(Message.text == "hello there")).all() == ["hello there"]


def test_a_cut_off_reply_and_a_safe_reply_are_shown_as_such(app_env):
    with writing(app_env) as session:
        ids = add_messages(session, [NewMessage("tell me a long story", "chat", person="amy", label="positive",
                                                confidence=0.8, p_negative=0.2, uncertain=False),
                                     NewMessage("i want to kill myself", "chat", person="amy", label="negative",
                                                confidence=0.9, p_negative=0.9, uncertain=False, risk="urgent",
                                                risk_category="self-harm")], rule=AlertRule())
        set_reply(session, ids[0], "Once upon a", interrupted=True)
        set_reply(session, ids[1], "Thank you for telling me.", kind="safe")
    at = open_page("chat")
    at.selectbox(key="person").set_value("amy").run()
    captions = values(at.caption)
    assert any("cut off before it finished" in c for c in captions)
    assert any("Reviewed safe message" in c for c in captions)
    assert any("urgent risk" in w for w in values(at.warning))


def test_a_group_filter_changes_every_figure_on_overview_and_trends(app_env):
    start = datetime(2026, 4, 1, 9)
    with writing(app_env) as session:
        add_messages(session, [NewMessage(f"{h} {i}", "chat", person=h, group=g, label="negative", confidence=0.9,
                                          p_negative=0.9, uncertain=False, created_at=start + timedelta(days=i))
                               for h, g, n in (("ann", "Class A", 6), ("ben", "Class B", 3)) for i in range(n)],
                     rule=AlertRule())
    at = open_page("overview")
    assert {m.label: m.value for m in at.metric}["Messages stored"] == "9"
    at.multiselect(key="overview_groups").set_value(["Class B"]).run()
    assert {m.label: m.value for m in at.metric}["Messages stored"] == "3"
    at.switch_page("app_pages/trends.py").run()
    at.multiselect(key="trends_groups").set_value(["Class A"]).run()
    assert list(frame(at, "handle", "negative")["handle"]) == ["ann"]
    assert list(frame(at, "handle", "negative")["Messages, last 7 days"]) == [6]  # the rule's window, said as such
    assert {b.key for b in at.get("download_button")} == {"export_alerts", "export_person"}  # as filtered, as CSV


def dated_people(db) -> None:
    """calm: an October run of negatives (an open alert then), positive all of November; sad: three negatives early
    in November (no alert); kit: one urgent risk message in November."""
    rows = [NewMessage(f"calm {d}", "chat", person="calm", label="negative", confidence=0.9, p_negative=0.9,
                       uncertain=False, created_at=datetime(2026, 10, d, 9)) for d in range(1, 7)]
    rows += [NewMessage(f"calm nov {d}", "chat", person="calm", label="positive", confidence=0.9, p_negative=0.1,
                        uncertain=False, created_at=datetime(2026, 11, d, 9)) for d in range(1, 15)]
    rows += [NewMessage(f"sad {d}", "chat", person="sad", label="negative", confidence=0.9, p_negative=0.9,
                        uncertain=False, created_at=datetime(2026, 11, d, 9)) for d in range(3, 6)]
    rows += [NewMessage("kit is in danger", "chat", person="kit", label="positive", confidence=0.9, p_negative=0.1,
                        uncertain=False, risk="urgent", risk_category="self-harm",
                        created_at=datetime(2026, 11, 10, 9))]
    with writing(db) as session:
        add_messages(session, rows, rule=AlertRule())


def test_with_a_date_range_every_trends_figure_and_title_follows_it(app_env):
    from datetime import date

    dated_people(app_env)
    at = open_page("trends")
    at.date_input(key="trends_dates").set_value((date(2026, 11, 1), date(2026, 11, 15))).run()
    assert not at.exception
    people = frame(at, "handle", "negative")
    titles = " ".join(people.columns) + " ".join(s.value for s in at.subheader)
    assert "last 7 days" not in titles and "2026-11-01" in titles and "2026-11-15" in titles
    window = next(c for c in people.columns if c.startswith("Messages"))
    by_handle = people.set_index("handle")
    assert by_handle.loc["sad", window] == 3 and by_handle.loc["sad", "Negative share"] == 1.0
    assert by_handle.loc["calm", "Open alerts"] == 0  # its alert is October's
    assert list(people["handle"]).index("sad") < list(people["handle"]).index("calm")  # 100% above 0%
    alerts = frame(at, "id", "status", "rule")
    assert len(alerts) == 1 and "urgent" in alerts["rule"].iloc[0]  # October's alert is outside the range
    assert alerts["Negative share"].isna().all()  # a risk alert has no negative share to show
    overview = open_page("overview")
    overview.date_input(key="overview_dates").set_value((date(2026, 11, 1), date(2026, 11, 15))).run()
    assert {m.label: m.value for m in overview.metric}["Open alerts"] == "1"  # kit's, not calm's October one
    look = frame(overview, "handle", "Open alerts")
    assert "last 7 days" not in " ".join(look.columns)


def test_people_are_named_by_display_name_with_the_handle_only_to_tell_two_apart(app_env):
    with writing(app_env) as session:
        add_messages(session, [NewMessage(f"{h} {i}", "chat", person=h, display_name=name, label="negative",
                                          confidence=0.9, p_negative=0.9, uncertain=False,
                                          created_at=datetime(2026, 4, 1 + i, 9))
                               for h, name in (("sam", None), ("jia1", "Jia Wu"), ("jia2", "Jia Wu"),
                                               ("lee", "Lee Min")) for i in range(5)], rule=AlertRule())
    at = open_page("trends")
    people = at.selectbox(key="trend_person")
    assert sorted(people.options) == ["Jia Wu (jia1)", "Jia Wu (jia2)", "Lee Min", "sam"]  # never "sam (sam)"
    assert any(o.startswith("#") and o.endswith("Lee Min (open)") for o in at.selectbox(key="alert_id").options)
    chat = open_page("chat")
    assert sorted(chat.selectbox(key="person").options[1:]) == ["Jia Wu (jia1)", "Jia Wu (jia2)", "Lee Min", "sam"]


def test_the_shipped_server_config_listens_locally_and_wastes_no_cpu_beside_the_model():
    """The source-file watcher re-walked the whole project (virtual environments and data/ included) on every
    SQLite write, which cost a full core whenever a tab was open and made the Screen page 2.6x slower than the CLI;
    the full garbage collection after every script run (0.3 s with the model loaded, holding the GIL) made a watched
    background screening 0.71x the CLI (README, Performance). Listening on localhost only is the other shipped safety
    default (README, Security)."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert config["server"]["address"] == "localhost"
    assert config["runner"]["postScriptGC"] is False


def test_the_activity_chart_has_one_bar_and_one_date_label_per_day_and_whole_counts(app_env):
    seed_person(app_env, "four", "+-+-")  # four days: Vega-Lite's own ticks came every six hours, each "2026-04-01"
    at = open_page("overview")
    spec = json.loads(next(e.proto.spec for e in at.get("vega_lite_chart")))
    x = spec["encoding"]["x"]
    assert x["timeUnit"] == "yearmonthdate" and x["axis"]["tickCount"] == "day" and x["axis"]["format"] == "%Y-%m-%d"
    assert spec["encoding"]["y"]["axis"] == {"format": "d", "tickMinStep": 1}  # no "0.2 messages"


def test_the_rule_is_spelled_out_and_a_one_day_person_still_gets_dated_axes(app_env):
    with writing(app_env) as session:
        add_messages(session, [NewMessage(f"oneday {i}", "chat", person="oneday", label="negative", confidence=0.9,
                                          p_negative=0.9, uncertain=False, created_at=datetime(2026, 4, 1, 9 + i))
                               for i in range(6)], rule=AlertRule())
    at = open_page("trends")
    assert all(len(n.label) > 5 for n in at.number_input), [n.label for n in at.number_input]  # no bare N, K, D, M
    assert any(c.startswith("Alert when at least 4 of the last 5 messages are negative") for c in values(at.caption))
    spec = next(e.proto.spec for e in at.get("vega_lite_chart") if "rolling" in e.proto.spec)
    # Dates as numbers, with the hours within two days: "%Y-%m-%d" labelled every tick with the same date.
    assert '"format": "%m-%d %H:%M"' in spec and '"format": "%Y-%m-%d"' not in spec
