"""What each column of an uploaded CSV holds, read from its cells: the free text, the time, the author.

Platform exports name their columns every which way (`posted_at` is a time, not a post), so the guess reads a
sample of the values, never the position: the text column holds long free text (the longest median cell among the
columns that are not numbers or date-times), the time column holds values that parse as date-times with the same
parser screening uses (so a guessed column passes the file check), and the person column is a short-string column
named like an author. Names only break ties. The page shows the guess and the CLI can use it.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from aio_core.csvfile import CsvInfo, iter_rows

SAMPLE_ROWS = 200
MOST = 0.8  # "most values" of a sample: a column is numbers, or date-times, when at least this share of its cells are
SHORT = 64  # a person column's cells are names or ids: at most this long (median)

_TEXT_NAMES = re.compile(r"text|comment|content|message|body|review|tweet|评论|内容|留言|正文|文本|消息", re.I)
_PERSON_NAMES = re.compile(r"author|user|name|handle|person|student|account|nick|用户|昵称|作者|姓名|学生", re.I)
_TIME_NAMES = re.compile(r"time|date|created|timestamp|posted|发布|时间|日期", re.I)
_NUMBER = re.compile(r"[+-]?(\d+([.,]\d+)*|\d*\.\d+)%?")


def parse_time(value: str) -> datetime | None:
    """A timestamp from a CSV cell as naive UTC; None for a blank cell; ValueError if unreadable."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit() and len(value) >= 9:  # Unix epoch seconds (or milliseconds), as some platforms export
        stamp = pd.Timestamp(int(value), unit="ms" if len(value) > 11 else "s", tz="UTC")
    else:
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if pd.isna(stamp):
        raise ValueError(value)
    return stamp.tz_localize(None).to_pydatetime()


def _is_time(value: str) -> bool:
    """Whether a non-blank cell reads as a date-time: digits in it (pandas also reads 'now' and 'today'), and an
    epoch number only when it lands in a plausible year (a 16-digit comment id is not a time)."""
    if not any(c.isdigit() for c in value):
        return False
    try:
        stamp = parse_time(value)
    except (ValueError, OverflowError):
        return False
    return stamp is not None and (not value.strip().isdigit() or 1990 <= stamp.year <= 2100)


@dataclass(frozen=True)
class ColumnGuess:
    text_column: str
    person_column: str | None
    time_column: str | None


@dataclass(frozen=True)
class _Profile:
    """What a sample of one column's non-blank cells looks like."""

    median_length: float
    numbers: float  # share of cells that are numbers (ids, counts)
    times: float  # share of cells that are date-times
    filled: int


def _profile(values: list[str]) -> _Profile:
    cells = [v.strip() for v in values if v.strip()]
    if not cells:
        return _Profile(0.0, 0.0, 0.0, 0)
    return _Profile(median_length=statistics.median(len(c) for c in cells),
                    numbers=sum(bool(_NUMBER.fullmatch(c)) for c in cells) / len(cells),
                    times=sum(_is_time(c) for c in cells) / len(cells), filled=len(cells))


def guess_columns(info: CsvInfo, sample_rows: int = SAMPLE_ROWS) -> ColumnGuess:
    """The likely text, person and time columns of a checked CSV, from the first `sample_rows` rows' cells."""
    values: dict[str, list[str]] = {c: [] for c in info.header}
    for number, _, row in iter_rows(info):
        if number > sample_rows:
            break
        for column, value in row.items():
            values[column].append(value)
    profiles = {c: _profile(v) for c, v in values.items()}

    def named(pattern: re.Pattern, column: str) -> bool:
        return bool(pattern.search(column))

    times = [c for c in info.header if profiles[c].filled and profiles[c].times >= MOST]
    time_column = max(times, key=lambda c: (profiles[c].times, named(_TIME_NAMES, c)), default=None)
    free = [c for c in info.header if c not in times and profiles[c].numbers < MOST] or list(info.header)
    text = max(free, key=lambda c: (profiles[c].median_length, named(_TEXT_NAMES, c)))
    people = [c for c in info.header if c not in (text, time_column) and named(_PERSON_NAMES, c)
              and profiles[c].filled and profiles[c].median_length <= SHORT]
    # An author's name before a numeric id of the same person (user_name before user_id), then the header's order.
    person = min(people, key=lambda c: (profiles[c].numbers >= MOST, info.header.index(c)), default=None)
    return ColumnGuess(text, person, time_column)


def column_samples(info: CsvInfo, count: int = 3) -> dict[str, list[str]]:
    """The first `count` non-blank values of every column, in one pass (the page shows the chosen text column's)."""
    samples: dict[str, list[str]] = {c: [] for c in info.header}
    wanting = len(info.header)
    for _, _, row in iter_rows(info):
        for column, value in row.items():
            kept = samples[column]
            if len(kept) < count and value.strip():
                kept.append(value)
                wanting -= len(kept) == count
        if not wanting:
            break
    return samples
