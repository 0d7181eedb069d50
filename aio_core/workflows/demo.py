"""A simulated class for a first run: a few weeks of messages from invented students, some with a sustained
negative stretch, so every page of a new install has something to show.

Everything it stores is marked: people are "Demo ..." in the group "Demo class (simulated)", and every message has
model "simulated-demo" and prompt version "demo" (the labels are the simulation's, not a model's). It only fills an
empty store, and is stored day by day so the alert rule fires as it would have live.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import Engine as Database

from aio_core.errors import UserError
from db.models import utcnow
from db.reports import overview
from db.rules import AlertRule
from db.session import reading, writing
from db.store import NewMessage, add_messages

DEMO_GROUP = "Demo class (simulated)"
DEMO_MODEL = "simulated-demo"
NAMES = ("Ada", "Bo", "Chen Jie", "Dara", "Eli", "Fang", "Gus", "Hana", "Ivo", "Jia", "Kai", "Lena", "Mo", "Nia",
         "Omar", "Pei", "Quinn", "Rui", "Sam", "Tao")
POSITIVE = (
    "I finally understood today's maths lesson!", "Our team won the quiz, so happy",
    "Thanks for the extra help after class", "The science trip was so much fun", "I got an A on my essay!",
    "Looking forward to the school concert", "今天的实验终于成功了，太棒了！", "老师讲得很清楚，我听懂了",
    "和同学一起做项目很开心", "考试考得不错，很满意", "体育课踢足球赢了！", "谢谢老师的鼓励",
)
NEGATIVE = (
    "Nobody wanted to be in my group again", "I don't understand anything in this class",
    "I'm so tired of everyone laughing at me", "Homework is too much, I can't sleep", "I hate coming to school lately",
    "I failed the test again, what's the point", "又被同学嘲笑了，心里很难受", "作业太多了，每天写到半夜，好累",
    "考试又没考好，感觉自己怎么努力都没用", "没人愿意跟我一组", "最近真的不想来学校了", "上课完全听不懂，好烦",
)


def _plan(rng: random.Random, people: int, weeks: int) -> list[tuple[str, float, tuple[int, int] | None]]:
    """(name, everyday chance of a negative message, (first, last) day of a bad stretch or None) per person."""
    plan = []
    days = weeks * 7
    for i in range(people):
        name = NAMES[i % len(NAMES)] + (f" {i // len(NAMES) + 1}" if i >= len(NAMES) else "")
        stretch = None
        if i % 4 == 1:  # every fourth student has a sustained negative stretch, some of them lately
            start = rng.randrange(days // 3, max(days // 3 + 1, days - 10))
            stretch = (start, min(days - 1, start + rng.randrange(8, 15)))
        plan.append((name, rng.uniform(0.1, 0.3), stretch))
    return plan


def fill_demo(db: Database, *, rule: AlertRule, people: int = 12, weeks: int = 6, seed: int = 7,
              now: datetime | None = None) -> str:
    """Fill an empty store with the simulated class; returns a one-line summary."""
    if people < 1 or weeks < 1:
        raise UserError("The demo needs at least 1 person and 1 week.")
    with reading(db) as session:
        existing = overview(session).messages
    if existing:
        raise UserError(f"The store already holds {existing} messages; the demo only fills an empty store "
                        "(point AIO_DB_URL at a new file to try it).")
    rng = random.Random(seed)
    # Noon yesterday, so that no simulated message (noon -7 h .. +5 h) is dated later than now.
    end = ((now or utcnow()) - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=weeks * 7 - 1)
    plan = _plan(rng, people, weeks)
    stored = 0
    for day in range(weeks * 7):
        date = start + timedelta(days=day)
        if date.weekday() >= 5:
            continue
        rows = []
        for index, (name, p_negative, stretch) in enumerate(plan):
            in_stretch = stretch is not None and stretch[0] <= day <= stretch[1]
            for _ in range(rng.choice((0, 1, 1, 2))):
                negative = rng.random() < (0.85 if in_stretch else p_negative)
                label = "negative" if negative else "positive"
                confidence = rng.uniform(0.6, 0.99)
                rows.append(NewMessage(
                    text=rng.choice(NEGATIVE if negative else POSITIVE), source="chat", person=f"demo-{index + 1:02d}",
                    display_name=f"Demo {name}", group=DEMO_GROUP, label=label, confidence=confidence,
                    p_negative=confidence if negative else 1 - confidence, uncertain=confidence < 0.75,
                    model=DEMO_MODEL, prompt_version="demo",
                    created_at=date + timedelta(minutes=rng.randrange(-420, 300))))
        if rows:
            with writing(db) as session:
                add_messages(session, rows, rule=rule)
            stored += len(rows)
    with reading(db) as session:
        alerts = overview(session).open_alerts
    return (f"Stored a simulated class: {people} demo people, {stored} messages over {weeks} weeks, "
            f"{alerts} open alert(s). Everything is marked '{DEMO_GROUP}'.")
