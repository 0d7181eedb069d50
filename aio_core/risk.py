"""Risk: is someone in danger? A signal of its own, apart from sentiment.

Negativity is not risk ("this exam was awful") and risk is not always negative in tone ("I finally know how I'll
end it, I feel calm"). Two readers:

- a phrase list (`aio_core/data/risk_phrases.json`, or the file `AIO_RISK_PHRASES` names): unambiguous statements
  such as "I want to kill myself" or 不想活了 decide at once, with idioms ("die laughing", 笑死) excepted. This is
  the default (`AIO_RISK=phrases`).
- the model's risk readout (`AIO_RISK=auto`): one forward pass with the risk reviewer's prompt (the same loaded
  model and prefix cache, label tokens read at the answer position like sentiment). On the eval model it ranks our
  hard non-risk texts ("this exam is killing me", news, lyrics) as high as real risk (AUC 0.48, README "Risk"), so
  it may only ever raise `concern`, never `urgent`, and only above `CONCERN_AT_LOG_ODDS`, the 90th percentile of
  ordinary complaints. It is off by default until a model reads risk better than chance.

The model reads only texts that are not clearly positive (`READ_BELOW_P_POSITIVE`), which keeps the bulk path's
cost down. `AIO_RISK=off` assesses nothing (every message stays unassessed, never "none").
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from aio_core.classify import Sentiment, read, sigmoid
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.prompts import RISK_PROMPT

BUILT_IN = Path(__file__).resolve().parent / "data" / "risk_phrases.json"
LEVELS = ("none", "concern", "urgent")
CATEGORIES = ("self-harm", "harm-to-others", "abuse", "bullying")
# log P(any risk) - log P(safe) above which the model's readout marks "concern": the 90th percentile of 300 negative
# product reviews from the multi-domain file (eval model, risk-1 prompt; README "Risk").
CONCERN_AT_LOG_ODDS = 7.65
READ_BELOW_P_POSITIVE = 0.9  # texts whose sentiment is at least this surely positive are not read by the model


@dataclass(frozen=True)
class Risk:
    level: str  # none | concern | urgent
    category: str | None  # self-harm | harm-to-others | abuse | bullying; None when level is none
    score: float  # the model's P(any risk), 1.0 for a phrase match, 0.0 when the model did not read the text
    version: str  # which phrase list and risk prompt decided, e.g. "phrases-1+risk-1"
    matched: str | None = None  # the words of the text that matched a phrase

    @property
    def risky(self) -> bool:
        return self.level != "none"

    def fields(self) -> dict[str, object]:
        """The stored columns (`NewMessage` keywords)."""
        return {"risk": self.level, "risk_category": self.category, "risk_score": round(self.score, 4),
                "risk_version": self.version}


class RiskPhrasesError(UserError):
    """The phrase list cannot be read."""


@dataclass(frozen=True)
class PhraseRule:
    category: str
    level: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class PhraseList:
    version: str
    rules: tuple[PhraseRule, ...]
    exceptions: tuple[re.Pattern[str], ...]

    def match(self, text: str) -> tuple[PhraseRule, str] | None:
        """The most severe rule that matches a span no exception covers, with the words it matched."""
        text = unicodedata.normalize("NFKC", text)
        spans = [m.span() for e in self.exceptions for m in e.finditer(text)]
        best: tuple[PhraseRule, str] | None = None
        for rule in self.rules:
            for found in rule.pattern.finditer(text):
                start, end = found.span()
                if any(s < end and start < e for s, e in spans):
                    continue
                if best is None or LEVELS.index(rule.level) > LEVELS.index(best[0].level):
                    best = (rule, found.group(0))
                break
        return best


@lru_cache(maxsize=8)
def load_phrases(path: str = "") -> PhraseList:
    """The phrase list at `path` ("" = the built-in one), checked."""
    where = Path(path) if path else BUILT_IN
    try:
        raw = json.loads(where.read_text(encoding="utf-8"))
        rules = []
        for rule in raw["rules"]:
            if rule["category"] not in CATEGORIES or rule["level"] not in LEVELS[1:]:
                raise ValueError(f"category must be one of {CATEGORIES} and level concern or urgent")
            rules += [PhraseRule(rule["category"], rule["level"], re.compile(p, re.IGNORECASE))
                      for p in rule["patterns"]]
        exceptions = tuple(re.compile(p, re.IGNORECASE) for p in raw.get("exceptions", ()))
        return PhraseList(str(raw["version"]), tuple(rules), exceptions)
    except OSError as exc:
        raise RiskPhrasesError(f"AIO_RISK_PHRASES={where} cannot be read ({exc.strerror}); point it at a JSON "
                               f"phrase list or leave it empty for the built-in one.") from None
    except (ValueError, KeyError, TypeError, re.error) as exc:
        raise RiskPhrasesError(f"The risk phrase list {where} is not valid ({exc}); start from a copy of "
                               f"{BUILT_IN.name}.") from None


def risk_version(engine: Engine) -> str:
    phrases = load_phrases(engine.settings.risk_phrases).version
    return phrases if engine.settings.risk == "phrases" else f"{phrases}+{RISK_PROMPT.version}"


def model_risk(texts: Sequence[str], *, engine: Engine) -> tuple[np.ndarray, list[str]]:
    """The model's log-odds of any risk against safe, and its most likely category, per text."""
    if not texts:
        return np.zeros(0), []
    reading = read(texts, engine=engine, prompt=RISK_PROMPT)
    names = [c for c in reading.classes if c != "none"]
    best = np.argmax(np.stack([reading.classes[c] for c in names]), axis=0)
    return reading.log_odds, [names[i] for i in best]


def assess_risk(texts: Sequence[str], *, engine: Engine,
                sentiments: Sequence[Sentiment] | None = None) -> list[Risk | None]:
    """One Risk per text (None for every text when `AIO_RISK=off`). `sentiments`, when given, lets clearly positive
    texts skip the model's readout."""
    mode = engine.settings.risk
    if mode == "off":
        return [None] * len(texts)
    phrases = load_phrases(engine.settings.risk_phrases)
    version = risk_version(engine)
    matches = [phrases.match(t) for t in texts]
    log_odds = np.full(len(texts), -np.inf)
    categories: list[str | None] = [None] * len(texts)
    if mode == "auto":
        wanted = [i for i, m in enumerate(matches) if m is None
                  and (sentiments is None or 1.0 - sentiments[i].p_negative < READ_BELOW_P_POSITIVE)]
        found, named = model_risk([texts[i] for i in wanted], engine=engine)
        for i, value, category in zip(wanted, found.tolist(), named, strict=True):
            log_odds[i], categories[i] = value, category
    scores = sigmoid(log_odds)
    results: list[Risk | None] = []
    for i, match in enumerate(matches):
        if match is not None:
            rule, words = match
            results.append(Risk(rule.level, rule.category, 1.0, version, words))
            continue
        level = "concern" if log_odds[i] >= CONCERN_AT_LOG_ODDS else "none"
        results.append(Risk(level, categories[i] if level != "none" else None, float(scores[i]), version))
    return results
