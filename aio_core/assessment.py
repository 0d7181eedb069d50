"""One reading of a message feeds every head: sentiment and risk come from the same forward pass.

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


@dataclass(frozen=True)
class Assessment:
    sentiment: Sentiment
    risk: Risk | None  # None when AIO_RISK=off


def readouts_for(engine: Engine) -> tuple[Readout, ...]:
    """Every hidden state the engine's heads read, each once."""
    wanted = list(sentiment_readouts(engine))
    if engine.risk_head is not None and engine.settings.risk == "auto":
        wanted.append(engine.risk_head.readout)
    return tuple(dict.fromkeys(wanted))


def assess(texts: Sequence[str], *, engine: Engine, batch_size: int | None = None,
           progress: Callable[[int], None] | None = None) -> list[Assessment]:
    """Sentiment and risk of each text from one forward pass per batch."""
    reading = read(texts, engine=engine, readouts=readouts_for(engine), batch_size=batch_size, progress=progress)
    sentiments = sentiments_from(reading, engine)
    risks = assess_risk(texts, engine=engine, reading=reading)
    return [Assessment(s, r) for s, r in zip(sentiments, risks, strict=True)]
