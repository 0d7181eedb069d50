"""The sentences the store writes itself (the rule that fired, the notes in an alert's history), named here.

The store keeps them in one language (English, as written since the first version), so what is stored never depends
on who was looking; each is written with `Phrase.say` and read back with `read_phrase` as a key and its values, which a
page turns into the reader's language. Text a person wrote (their note) matches no phrase and is shown as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FIELDS = {"k": r"\d+", "n": r"\d+", "m": r"\d+", "days": r"\d+", "id": r"\d+", "share": r"\d+%"}


@dataclass(frozen=True)
class Phrase:
    key: str  # the page's string for it (app_pages/strings.py)
    template: str  # as stored, with {fields}
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pieces = re.split(r"\{(\w+)\}", self.template)  # literal, field, literal, field, ...
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{_FIELDS.get(p, '.+?')})"
                        for i, p in enumerate(pieces))
        object.__setattr__(self, "pattern", re.compile(regex, re.DOTALL))

    def say(self, **values: object) -> str:
        return self.template.format(**values)


RULE_LAST = Phrase("rule_last_fired", "{k} of the last {n} messages negative")
RULE_DAYS = Phrase("rule_days_fired", "at least {share} of at least {m} messages negative within {days} days")
RISK_RULE = Phrase("rule_risk_message", "risk message")
WITHDRAWN = Phrase("note_withdrawn", "withdrawn: the rule no longer fires on these messages")
FIRES_AGAIN = Phrase("note_fires_again", "the rule fires again: {rule}")
RISK_RAISED = Phrase("note_risk_raised", "{level} ({category}), message {id}")
# A review's note, if any, is the reviewer's own words after " - ": the longer phrases are tried first.
REVIEWED_RISK_NOTE = Phrase("note_reviewed_risk_note", "reviewed by {by}: {level} ({category}) - {note}")
REVIEWED_RISK = Phrase("note_reviewed_risk", "reviewed by {by}: {level} ({category})")
REVIEWED_NONE_NOTE = Phrase("note_reviewed_none_note", "reviewed by {by}: not a risk - {note}")
REVIEWED_NONE = Phrase("note_reviewed_none", "reviewed by {by}: not a risk")
REVIEW_UNDONE = Phrase("note_review_undone", "review {id} undone")

PHRASES = (FIRES_AGAIN, RULE_LAST, RULE_DAYS, RISK_RULE, WITHDRAWN, REVIEWED_NONE_NOTE, REVIEWED_NONE,
           REVIEWED_RISK_NOTE, REVIEWED_RISK, REVIEW_UNDONE, RISK_RAISED)
UNSPECIFIED = "unspecified"  # a risk stored without its category


def read_phrase(text: str | None) -> tuple[str, dict[str, str]] | None:
    """The phrase `text` was written with, as (key, values); None for anything else (a person's own words)."""
    if not text:
        return None
    for phrase in PHRASES:
        found = phrase.pattern.fullmatch(text)
        if found:
            return phrase.key, found.groupdict()
    return None
