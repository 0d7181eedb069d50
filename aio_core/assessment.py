"""One reading of a message feeds every head: sentiment, risk and situation come from the same forward pass.

`assess` asks the backend for the hidden states every head of the engine needs (the label head's readout per
language, the risk head's readout), runs the sentiment prompt once per batch, and hands the `Reading` to each head,
the way transformers pipelines run `preprocess -> _forward -> postprocess` once and let each task read the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aio_core.backends import Readout
from aio_core.classify import Sentiment, read, sentiment_readouts, sentiments_from
from aio_core.engine import Engine
from aio_core.risk import Risk, assess_risk
from aio_core.situation import UNSURE


@dataclass(frozen=True)
class Assessment:
    sentiment: Sentiment
    risk: Risk | None  # None when AIO_RISK=off
    situation: str = UNSURE  # what the message is about (situation.SITUATIONS), for the reply's opening


def readouts_for(engine: Engine) -> tuple[Readout, ...]:
    """Every hidden state the engine's heads read, each once."""
    wanted = list(sentiment_readouts(engine))
    if engine.risk_head is not None and engine.settings.risk == "auto":
        wanted.append(engine.risk_head.readout)
    if engine.situation_head is not None:
        wanted.append(engine.situation_head.readout)
    return tuple(dict.fromkeys(wanted))


def assess(texts: Sequence[str], *, engine: Engine, batch_size: int | None = None,
           progress: Callable[[int], None] | None = None) -> list[Assessment]:
    """Sentiment and risk of each text from one forward pass per batch."""
    reading = read(texts, engine=engine, readouts=readouts_for(engine), batch_size=batch_size, progress=progress)
    sentiments = sentiments_from(reading, engine)
    risks = assess_risk(texts, engine=engine, reading=reading)
    situations = [UNSURE] * len(texts)
    head = engine.situation_head
    if head is not None:
        hidden = reading.hidden[:, reading.readouts.index(head.readout)]
        situations = head.read(hidden, reading.log_odds, [s.p_negative for s in sentiments])
    return [Assessment(s, r, c) for s, r, c in zip(sentiments, risks, situations, strict=True)]
