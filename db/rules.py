"""Sustained negativity: when one person's recent messages are negative often enough that someone should look.

Pure functions over (time, label) series, so they are tested on synthetic data and reused by the store (to open
alerts) and the trends page (to shade flagged windows). "The last N days" ends at the person's newest message, not at
the wall clock, so a CSV of last term's messages is judged the same way as today's chat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from db.phrases import RULE_DAYS, RULE_LAST


def negative_share(negatives: int, labelled: int) -> float:
    """THE negative share: negative labels over labelled messages, 0 when nothing is labelled."""
    return negatives / labelled if labelled else 0.0


@dataclass(frozen=True)
class AlertRule:
    last_n: int = 5  # rule 1: at least last_k of the last last_n labelled messages are negative
    last_k: int = 4
    days: int = 7  # rule 2: over the last `days` days, at least `share` of at least `min_messages` are negative
    share: float = 0.6
    min_messages: int = 5

    def describe(self, which: str) -> str:
        """The rule that fired, as the store keeps it (db.phrases: a page shows it in the reader's language)."""
        if which == "last":
            return RULE_LAST.say(k=self.last_k, n=self.last_n)
        return RULE_DAYS.say(share=f"{self.share:.0%}", m=self.min_messages, days=self.days)


@dataclass(frozen=True)
class Finding:
    rule: str  # human-readable rule that fired, with its parameters
    window_start: datetime
    window_end: datetime
    negatives: int
    total: int

    @property
    def share(self) -> float:
        return negative_share(self.negatives, self.total)


Series = Sequence[tuple[datetime, str]]  # (created_at, label), oldest first; unlabelled messages left out


@dataclass(frozen=True)
class Counts:
    """What the rule decides on at a person's newest message: their last N messages and their last D days."""

    newest: datetime
    last_total: int  # how many of the last N there are (fewer than N for a short history)
    last_negative: int
    last_start: datetime | None
    days_total: int
    days_negative: int
    days_start: datetime | None


def decide(counts: Counts, rule: AlertRule) -> Finding | None:
    """THE alert rule: rule 1 (at least K of the last N negative) first, then rule 2 (at least `share` of at least M
    messages over the last D days). Fed by `evaluate` from a series in memory and by the store's SQL aggregates
    (db/alerts.py), so the two can never disagree."""
    if counts.last_total == rule.last_n and counts.last_negative >= rule.last_k:
        return Finding(rule.describe("last"), counts.last_start, counts.newest, counts.last_negative,
                       counts.last_total)
    if counts.days_total >= rule.min_messages and counts.days_negative >= rule.share * counts.days_total - 1e-9:
        return Finding(rule.describe("days"), counts.days_start, counts.newest, counts.days_negative,
                       counts.days_total)
    return None


def evaluate(series: Series, rule: AlertRule = AlertRule()) -> Finding | None:
    """The finding at the newest message of `series`, or None when neither rule fires there."""
    if not series:
        return None
    last = series[-rule.last_n:]
    end = series[-1][0]
    window = [(t, label) for t, label in series if t > end - timedelta(days=rule.days)]
    return decide(Counts(newest=end, last_total=len(last), last_negative=sum(lb == "negative" for _, lb in last),
                         last_start=last[0][0], days_total=len(window),
                         days_negative=sum(lb == "negative" for _, lb in window), days_start=window[0][0]), rule)


def flagged_windows(series: Series, rule: AlertRule = AlertRule()) -> list[tuple[datetime, datetime]]:
    """Every stretch of time where the rule fires, merged where they overlap (for shading a chart)."""
    spans: list[tuple[datetime, datetime]] = []
    for end in range(1, len(series) + 1):
        finding = evaluate(series[:end], rule)
        if finding is None:
            continue
        if spans and finding.window_start <= spans[-1][1]:
            spans[-1] = (min(spans[-1][0], finding.window_start), finding.window_end)
        else:
            spans.append((finding.window_start, finding.window_end))
    return spans


def rolling_share(series: Series, days: int) -> list[float]:
    """At each message, the negative share of the person's messages over the `days` days up to it."""
    shares = []
    start = 0
    negatives = 0
    for end, (t, label) in enumerate(series):
        negatives += label == "negative"
        while series[start][0] <= t - timedelta(days=days):
            negatives -= series[start][1] == "negative"
            start += 1
        shares.append(negatives / (end - start + 1))
    return shares
