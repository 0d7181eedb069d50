"""Risk: is someone in danger? A signal of its own, apart from sentiment.

Negativity is not risk ("this exam was awful") and risk is not always negative in tone ("I finally know how I'll
end it, I feel calm"). Two readers, and a message takes the more severe of the two:

- the learned risk head (`risk_head.py`, `AIO_RISK=auto`, the default when a head is fitted for these weights): it
  reads the hidden state of the sentiment pass, so indirect phrasing ("I gave my guitar to my cousin, I won't be
  needing it") is caught with no second forward pass. Its thresholds are chosen per level by a false-alarm budget.
- a phrase list (`aio_core/data/risk_phrases.json`, or the file `AIO_RISK_PHRASES` names), the floor for explicit
  statements ("I want to kill myself", 不想活了), matched on the text and on its de-evaded forms (`evasion.py`:
  `k1ll mys3lf`, spaced letters, zero-width and look-alike characters), with idioms ("die laughing", 笑死) excepted.

`AIO_RISK=phrases` uses the floor alone, `off` assesses nothing (every message stays unassessed, never "none"). A
backend without hidden states (a model server) keeps the floor and says so. Every assessment records the phrase
list's version and the head's id, so any alert can be reproduced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from aio_core.classify import Reading, read
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.evasion import plain_forms
from aio_core.risk_head import CATEGORIES
from db.labels import RISK_LEVELS

BUILT_IN = Path(__file__).resolve().parent / "data" / "risk_phrases.json"
LEVELS = RISK_LEVELS


@dataclass(frozen=True)
class Risk:
    level: str  # none | concern | urgent
    category: str | None  # self-harm | harm-to-others | abuse | bullying; None when level is none
    score: float  # the head's P(any risk); 1.0 for a phrase match when no head read the text, 0.0 for none
    version: str  # the phrase list's version, e.g. "phrases-3"
    head_id: str | None = None  # the risk head that read the text, None = the phrase list alone
    matched: str | None = None  # the words of the text that matched a phrase

    @property
    def risky(self) -> bool:
        return self.level != "none"

    def fields(self) -> dict[str, object]:
        """The stored columns (`NewMessage` keywords)."""
        return {"risk": self.level, "risk_category": self.category, "risk_score": round(self.score, 4),
                "risk_version": self.version, "risk_head_id": self.head_id}


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
        """The most severe rule that matches a span no exception covers, in the text as typed or in a de-evaded
        form of it (`evasion.plain_forms`), with the words it matched."""
        best: tuple[PhraseRule, str] | None = None
        for form in plain_forms(text):
            spans = [m.span() for e in self.exceptions for m in e.finditer(form)]
            for rule in self.rules:
                for found in rule.pattern.finditer(form):
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
    return load_phrases(engine.settings.risk_phrases).version


def assess_risk(texts: Sequence[str], *, engine: Engine, reading: Reading | None = None) -> list[Risk | None]:
    """One Risk per text (None for every text when `AIO_RISK=off`): the phrase floor, and the engine's risk head on
    `reading` (the texts' sentiment pass, `assessment.assess`; read here when not given) when it has one."""
    if engine.settings.risk == "off":
        return [None] * len(texts)
    phrases = load_phrases(engine.settings.risk_phrases)
    head = engine.risk_head
    if head is not None and reading is None:
        reading = read(texts, engine=engine, readouts=(head.readout,))
    readings = (head.read(reading.state(head.readout), reading.log_odds, reading.langs) if head is not None
                else None)
    results: list[Risk | None] = []
    for i, text in enumerate(texts):
        match = phrases.match(text)
        found = readings[i] if readings else None
        level, category, words = "none", None, None
        if found is not None:
            level, category = found.level, found.category
        if match is not None and LEVELS.index(match[0].level) >= LEVELS.index(level):
            level, category, words = match[0].level, match[0].category, match[1]
        score = found.p_risk if found is not None else (1.0 if match is not None else 0.0)
        results.append(Risk(level, category, score, phrases.version, head.head_id if found else None, words))
    return results
