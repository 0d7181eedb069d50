"""Use-cases that join the engine and the store: one chat turn, one CSV screening, the demo class.

The engine never calls the store and the store never calls the engine; these modules are where the two meet, so
the conversions between them live here, once: settings to the alert rule, a Sentiment to the stored label fields.
"""

from __future__ import annotations

from aio_core.classify import Sentiment
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.settings import Settings
from db.errors import StoreError
from db.rules import AlertRule

# Problems a user can fix, from either side: each is one sentence that names the fix.
USER_ERRORS = (UserError, StoreError)


def alert_rule(settings: Settings) -> AlertRule:
    """The sustained-negativity rule the settings describe."""
    return AlertRule(last_n=settings.alert_last_n, last_k=settings.alert_last_k, days=settings.alert_days,
                     share=settings.alert_share, min_messages=settings.alert_min_messages)


def label_fields(sentiment: Sentiment, engine: Engine) -> dict[str, object]:
    """A Sentiment as the label columns of a stored message (`NewMessage` / `set_label` keywords)."""
    return {"label": sentiment.label, "confidence": sentiment.confidence, "p_negative": sentiment.p_negative,
            "uncertain": sentiment.uncertain, "model": engine.name, "prompt_version": sentiment.prompt_version}
