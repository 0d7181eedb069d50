"""The reviewed reply library: the words a reply starts with, chosen by what the student's message is about.

`aio_core/data/reply_library.json` (or the file `AIO_REPLY_LIBRARY` names) holds, per situation and language, a few
openings that fit any message of that situation and a few follow-up questions; "unsure" fits any message at all;
"concern" holds the gentle line added when a counsellor should look at a message. Every string was written and then
reviewed by a counsellor (README, Replies); a school's own copy should be too. Its version is stored with every reply
it spoke.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from aio_core.errors import UserError
from aio_core.situation import SITUATIONS, SURELY, UNSURE, UNSURE_NEGATIVE, UNSURE_POSITIVE

BUILT_IN = Path(__file__).resolve().parent / "data" / "reply_library.json"


@dataclass(frozen=True)
class Library:
    version: str
    situations: dict[str, dict[str, dict[str, list[str]]]]  # situation -> lang -> openings | follow_ups
    concern: dict[str, list[str]]  # lang -> lines

    def _pick(self, options: list[str], key: str) -> str:
        """One of `options`, the same for the same key (a message's text), so a reply can be reproduced."""
        return options[random.Random(key).randrange(len(options))]

    @staticmethod
    def entry_for(situation: str, p_negative: float | None) -> str:
        """The library entry a reply uses: the situation's, or for "unsure" the general entry of the message's tone
        when the sentiment is sure of it (a flat reply to good news read as not sensible)."""
        if situation != UNSURE or p_negative is None:
            return situation
        if p_negative <= 1 - SURELY:
            return UNSURE_POSITIVE
        return UNSURE_NEGATIVE if p_negative >= SURELY else UNSURE

    def opening(self, situation: str, lang: str, key: str) -> str:
        return self._pick(self.situations[situation if situation in self.situations else UNSURE][lang]["openings"],
                          key)

    def follow_up(self, situation: str, lang: str, key: str) -> str:
        return self._pick(self.situations[situation if situation in self.situations else UNSURE][lang]["follow_ups"],
                          key + "/follow-up")

    def concern_line(self, lang: str, key: str) -> str:
        return self._pick(self.concern[lang], key + "/concern")


@lru_cache(maxsize=4)
def load_library(path: str = "") -> Library:
    """The library at `path` ("" = the built-in one), checked: every situation and "unsure" in both languages, with
    openings and follow-ups, and the concern lines."""
    where = Path(path) if path else BUILT_IN
    try:
        raw = json.loads(where.read_text(encoding="utf-8"))
        situations = raw["situations"]
        for name in (*SITUATIONS, UNSURE, UNSURE_POSITIVE, UNSURE_NEGATIVE):
            for lang in ("en", "zh"):
                entry = situations[name][lang]
                if not entry["openings"] or not entry["follow_ups"] or not all(
                        isinstance(s, str) and s.strip() for s in entry["openings"] + entry["follow_ups"]):
                    raise ValueError(f"{name}/{lang} needs openings and follow_ups, each a non-empty string")
        for lang in ("en", "zh"):
            if not raw["concern"][lang]:
                raise ValueError(f"concern/{lang} is empty")
        return Library(version=str(raw["version"]), situations=situations, concern=raw["concern"])
    except OSError as exc:
        raise UserError(f"AIO_REPLY_LIBRARY={where} cannot be read ({exc.strerror}); point it at a JSON reply "
                        f"library or leave it empty for the built-in one.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"The reply library {where} is not valid ({exc}); start from a copy of "
                        f"{BUILT_IN.name}.") from None
