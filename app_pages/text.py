"""Streamlit glue for every page: settings, the one cached engine and database, UI language, and safe text.

Streamlit renders markdown in nearly every string it shows: messages, captions, subheaders, and the labels of
buttons, inputs and expanders. So text from a user, a file or the model is never put there as it is:

- `t(key, **values)` is the product's own sentence with each value made `inert()`: the characters that make links
  (`[x](javascript:...)`, `<http://...>`, bare `www.` and e-mail autolinks), images, Streamlit's `:red[...]`
  directives and LaTeX backslash-escaped, so a file name, a handle or a person's name shows as it was typed;
- `md(text)` is any other sentence (an error that names a file, a job's summary) made inert the same way;
- `plain(text)` escapes every ASCII punctuation mark, for what people and the model wrote (messages, replies).

`t` and `md` return `Markdown`, which is never escaped twice. Nothing here passes `unsafe_allow_html`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator
from datetime import datetime

import streamlit as st

from aio_core.classify import badge
from app_pages.strings import STRINGS, text
from db.alerts import RULE
from db.labels import RISKY
from db.phrases import read_phrase
from db.reports import Filters


def lang() -> str:
    """The reader's language: their choice in this browser session, else AIO_UI_LANG."""
    from app_pages.state import settings

    return st.session_state.get("lang") or settings().ui_lang


class Markdown(str):
    """Text that is safe to render as markdown: escaped where it came from anyone but the product."""


class _Escaped:
    """A value in a translated sentence: formatted as its placeholder asks ({rows:,}), then escaped."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return inert(format(self.value, spec))


def t(key: str, **values: object) -> Markdown:
    """The sentence `key` in the page's language, with every value escaped (see the module's docstring)."""
    return Markdown(text(key, lang(), **{name: value if isinstance(value, Markdown) else _Escaped(value)
                                         for name, value in values.items()}))


def words(key: str, **values: object) -> str:
    """The sentence `key` in the page's language, not escaped: for what Streamlit shows as plain text (a select
    box's options, a table's cells), where an escape would show as a backslash."""
    return text(key, lang(), **values)


# Values inside the store's own sentences that are words of ours, not someone's text (db/phrases.py).
_PHRASE_WORDS = {"level": lambda v: f"level_{v}", "category": lambda v: v}


def said(stored: str | None) -> str:
    """A sentence the store wrote itself (the rule that fired, a note in an alert's history) in the reader's
    language; anything else (a person's own note) as it was written. Plain text, for table cells."""
    found = read_phrase(stored)
    if found is None:
        return stored or ""
    key, values = found
    shown = {}
    for name, value in values.items():
        if name == "rule":
            shown[name] = said(value)
        elif name in _PHRASE_WORDS and _PHRASE_WORDS[name](value) in STRINGS:
            shown[name] = words(_PHRASE_WORDS[name](value))
        else:
            shown[name] = value
    return words(key, **shown)


def actor(by: str | None) -> str:
    """Who made a change: a person's name, or the product itself (the rule) in the reader's language."""
    return words("actor_rule") if by == RULE else by or ""


def md(value: object) -> Markdown:
    """Any text made safe to show where Streamlit renders markdown (already safe text is left as it is)."""
    return value if isinstance(value, Markdown) else Markdown(inert(value))


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


_MARKDOWN_SPECIAL = set(string.punctuation)


# What can turn text into something else than text: links and images ([ ] ( ) < > !), Streamlit's
# :directives[...] and :icons: (:), LaTeX ($), code (`), and the backslash itself. Ordinary punctuation of a sentence
# (. , ; ' " - / = % @) is left alone, so sentences read as written wherever they are shown.
_INERT = set("\\[]()<>!:$`")


# Bare web addresses become links after escapes are read (GFM's autolink literals: http://..., www....), so an
# invisible word joiner is put inside each: it shows the same, and no longer reads as an address. (An e-mail
# address still becomes a mailto: link, which opens no page and loads nothing.)
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)", re.IGNORECASE)


def inert(value: object) -> str:
    """Text that markdown cannot turn into a link, an image, a directive or a formula (see _INERT)."""
    escaped = "".join("\\" + c if c in _INERT else c for c in str(value))
    return _AUTOLINK.sub("\u2060", escaped).replace("\r\n", "\n").replace("\n", "  \n")


def plain(value: object) -> str:
    """Text that markdown shows exactly as written: punctuation escaped, line breaks kept."""
    escaped = "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in str(value))
    return escaped.replace("\r\n", "\n").replace("\n", "  \n")


def plain_stream(pieces: Iterable[str]) -> Iterator[str]:
    """`plain()` for a streamed reply, piece by piece (each character is escaped on its own)."""
    for piece in pieces:
        yield plain(piece)


def label_badge(label: str | None, confidence: float | None, uncertain: bool | None) -> str:
    """A stored label's badge in the page's language; messages stored without a model say so."""
    return "⏳ " + t("unlabelled_badge") if label is None else badge(label, confidence, bool(uncertain), lang())


def risk_badge(level: str | None, category: str | None) -> str:
    """A stored risk assessment's badge in the page's language; empty when there is no risk."""
    if level not in RISKY:
        return ""
    return t(f"risk_{level}", category=t(category) if category else "?")


def window(filters: Filters, days: int) -> Markdown:
    """The span the people figures cover, in words: the chosen date range, else the rule's last `days` days."""
    if filters.dated:
        return t("window_range", since=filters.since or datetime.min, until=filters.until or datetime.max)
    return t("window_days", days=days)
