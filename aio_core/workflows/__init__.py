"""Use-cases that join the engine and the store: one chat turn, one CSV screening, the demo class.

The engine never calls the store and the store never calls the engine; these modules are where the two meet, so
the conversions between them live here, once: settings to the alert rule, a Sentiment to the stored label fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from sqlalchemy import Engine as Database

from aio_core.assessment import assess as read_once
from aio_core.classify import Sentiment
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.risk import Risk
from aio_core.settings import Settings
from db.errors import StoreError
from db.rules import AlertRule
from db.session import reading
from db.users import get_setting

# Problems a user can fix, from either side: each is one sentence that names the fix.
USER_ERRORS = (UserError, StoreError)


def alert_rule(settings: Settings, db: Database | None = None) -> AlertRule:
    """The sustained-negativity rule in force: the one an admin saved (Trends, `rules.change_rule`) when `db` is
    given and one was saved, else the one the settings describe."""
    if db is not None:
        with reading(db) as session:
            saved = get_setting(session, "alert_rule")
        if saved:
            return AlertRule(**json.loads(saved))
    return AlertRule(last_n=settings.alert_last_n, last_k=settings.alert_last_k, days=settings.alert_days,
                     share=settings.alert_share, min_messages=settings.alert_min_messages)


def label_fields(sentiment: Sentiment, engine: Engine, risk: Risk | None = None) -> dict[str, object]:
    """A Sentiment (and its Risk) as the label columns of a stored message (`NewMessage` / `set_labels`)."""
    fields: dict[str, object] = {
        "label": sentiment.label, "confidence": sentiment.confidence, "p_negative": sentiment.p_negative,
        "uncertain": sentiment.uncertain, "model": engine.name, "fingerprint": engine.fingerprint,
        "prompt_version": sentiment.prompt_version, "head_id": sentiment.head_id}
    if risk is not None:
        fields.update(risk.fields())
    return fields


def assess(texts: Sequence[str], *, engine: Engine, progress: Callable[[int], None] | None = None
           ) -> list[tuple[Sentiment, Risk | None]]:
    """Sentiment and risk for each text: the two signals every stored message gets, from one forward pass."""
    return [(a.sentiment, a.risk) for a in read_once(texts, engine=engine, progress=progress)]


def store_assessed(db: Database, texts: Sequence[str], results: Sequence[tuple[Sentiment, Risk | None]], *,
                   engine: Engine, source: str, person: str | None, author: str | None, rule: AlertRule) -> None:
    """Store texts with the labels and risks they were given (alerts follow in the same transaction)."""
    from db.session import writing
    from db.store import NewMessage, add_messages

    rows = [NewMessage(text=t, source=source, person=person, author=author, **label_fields(s, engine, r))
            for t, (s, r) in zip(texts, results, strict=True)]
    with writing(db) as session:
        add_messages(session, rows, rule=rule)
