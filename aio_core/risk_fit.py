"""Fitting the risk head, and judging it the way it must hold up: on sources it was not fitted on.

Rows come from CSV files `text,risk[,risk_category][,lang][,kind][,source][,weight]`: risk is none | concern |
urgent, kind is indirect | explicit | lookalike | ordinary (what a false alarm on it means), source names who wrote
or collected the rows (the file's name when missing), weight scales a row (public sets whose labels only roughly
match ours are shipped at 0.2). The shipped fitting set is `aio_core/data/risk/` (sources and licences in its
README); `fit-head --risk` uses it when given no files.

Every source weighs the same in a fit (within a source, its risk rows and its other rows weigh half each), so 500
long forum posts cannot outvote 100 messages in a student's voice. Thresholds come from out-of-fold scores: each
source scored by a head fitted on the others (`out_of_fold`), then the budget of `risk_head.BUDGETS` applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aio_core.backends import Readout
from aio_core.csvfile import inspect_csv, iter_rows
from aio_core.errors import UserError
from aio_core.heads import features_of
from aio_core.probes import Probe, fit_linear, fit_network
from aio_core.prompts import detect_lang
from aio_core.risk_head import CATEGORIES, RiskHead, category_index, threshold
from db.labels import RISK_LEVELS

SHIPPED = Path(__file__).resolve().parent / "data" / "risk"
LEVELS = RISK_LEVELS
KINDS = ("indirect", "explicit", "risk", "lookalike", "ordinary")
CORRECTIONS_SOURCE = "corrections"
CORRECTION_WEIGHT = 5.0  # one counsellor's review weighs as much as five rows of a source (as for the label head)


@dataclass(frozen=True)
class RiskRow:
    text: str
    risk: str  # none | concern | urgent
    category: str | None
    lang: str
    kind: str  # indirect | explicit | risk (either) | lookalike | ordinary
    source: str
    weight: float = 1.0


def shipped_files() -> list[Path]:
    return sorted(SHIPPED.glob("*.csv"))


def read_risk_rows(paths: Sequence[Path | str]) -> list[RiskRow]:
    """The rows of risk CSV files; one sentence naming the file and lines for anything unusable."""
    rows: list[RiskRow] = []
    for path in paths:
        info = inspect_csv(path)
        missing = [c for c in ("text", "risk") if c not in info.header]
        if missing:
            raise UserError(f"{info.name} lacks the column(s) {', '.join(missing)}; a risk file needs "
                            f"text,risk[,risk_category][,lang][,kind][,source] (it has: {', '.join(info.header)}).")
        bad = []
        for _, line, row in iter_rows(info):
            risk = row["risk"].strip().lower()
            category = (row.get("risk_category") or "").strip().lower() or None
            kind = (row.get("kind") or "").strip().lower() or ("risk" if risk != "none" else "lookalike")
            try:
                weight = float(row.get("weight") or 1.0)
            except ValueError:
                weight = -1.0
            if (risk not in LEVELS or kind not in KINDS or weight < 0 or (risk == "none") != (category is None)
                    or (category is not None and category not in CATEGORIES)):
                bad.append(f"line {line}")
                continue
            rows.append(RiskRow(text=row["text"], risk=risk, category=category,
                                lang=(row.get("lang") or "").strip() or detect_lang(row["text"]), kind=kind,
                                source=(row.get("source") or "").strip() or Path(info.name).stem, weight=weight))
        if bad:
            raise UserError(f"{info.name} has rows whose risk is not none/concern/urgent, whose category is not one of "
                            f"{', '.join(CATEGORIES)} (empty exactly when risk is none), or whose kind or weight is "
                            f"unusable ({', '.join(bad[:5])}); fix or remove them.")
    return rows


def source_weights(rows: Sequence[RiskRow]) -> np.ndarray:
    """Each source weighs the same; within it, its risk rows and its other rows half each; times each row's weight.
    Corrections weigh CORRECTION_WEIGHT times an average row."""
    weights = np.zeros(len(rows))
    source = np.array([r.source for r in rows])
    risky = np.array([r.risk != "none" for r in rows])
    for name in set(source) - {CORRECTIONS_SOURCE}:
        for side in (True, False):
            mask = (source == name) & (risky == side)
            if mask.any():
                weights[mask] = 1.0 / mask.sum()
    normal = source != CORRECTIONS_SOURCE
    if normal.any():
        weights[normal] *= normal.sum() / weights[normal].sum()
    weights[~normal] = CORRECTION_WEIGHT
    return weights * np.array([r.weight for r in rows])


@dataclass(frozen=True)
class Fitted:
    any_risk: Probe
    urgent: Probe
    category: Probe


def _fit(features: np.ndarray, rows: Sequence[RiskRow], weights: np.ndarray) -> Fitted:
    risky = np.array([r.risk != "none" for r in rows])
    urgent = np.array([r.risk == "urgent" for r in rows])
    categories = {r.category for r in rows if r.category}
    if not risky.any() or risky.all() or not urgent.any() or categories != set(CATEGORIES):
        raise UserError("Fitting a risk head needs risk rows of every category (" + ", ".join(CATEGORIES) + "), "
                        "urgent ones among them, and non-risk rows; add rows or use the shipped set.")
    return Fitted(any_risk=fit_network(features, risky.astype(int), weights),
                  urgent=fit_network(features, urgent.astype(int), weights),
                  category=fit_linear(features[risky], category_index([r.category for r in rows if r.category]),
                                      weights[risky]))


def out_of_fold(features: np.ndarray, rows: Sequence[RiskRow], *, folds: int = 0,
                progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(any-risk, urgent) log-odds of every row from a head fitted without its source. `folds` > 0 groups the sources
    into that many folds (faster, for nested use); 0 = one fold per source."""
    source = np.array([r.source for r in rows])
    names = sorted(set(source))
    groups = [names[i::folds] for i in range(folds)] if folds else [[n] for n in names]
    any_risk, urgent = np.zeros(len(rows)), np.zeros(len(rows))
    weights = source_weights(rows)
    for done, group in enumerate(groups, 1):
        test = np.isin(source, group)
        train = ~test
        fitted = _fit(features[train], [r for r, t in zip(rows, train, strict=True) if t], weights[train])
        any_risk[test], urgent[test] = fitted.any_risk(features[test]), fitted.urgent(features[test])
        if progress:
            progress(done, len(groups))
    return any_risk, urgent


def thresholds(rows: Sequence[RiskRow], any_risk: np.ndarray, urgent: np.ndarray) -> dict[str, dict[str, float]]:
    """concern_at and urgent_at per language from held-out scores, by the budgets of `risk_head.BUDGETS`; every
    source counts alike (`source_weights`)."""
    weights = source_weights(rows)
    none = np.array([r.risk == "none" for r in rows])
    lang = np.array([r.lang for r in rows])
    found: dict[str, dict[str, float]] = {"concern_at": {}, "urgent_at": {}}
    for name in sorted(set(lang.tolist())):
        mine = none & (lang == name)
        ordinary = mine & np.array([r.kind == "ordinary" for r in rows])
        lookalike = mine & np.array([r.kind == "lookalike" for r in rows])
        if ordinary.any() or lookalike.any():
            found["concern_at"][name] = threshold(any_risk, weights, ordinary, lookalike, "concern")
            found["urgent_at"][name] = threshold(urgent, weights, ordinary, lookalike, "urgent")
    if not found["concern_at"]:
        raise UserError("Choosing risk thresholds needs non-risk rows (kind ordinary or lookalike).")
    return found


def fit_risk_head(rows: Sequence[RiskRow], hidden: np.ndarray, zero_shot: np.ndarray, *, readout: Readout,
                  fingerprint: str, prompt_version: str, meta: dict | None = None,
                  progress: Callable[[int, int], None] | None = None) -> RiskHead:
    """The head on every row, its thresholds chosen on out-of-fold scores (one fold per source)."""
    features = features_of(hidden, zero_shot)
    if len({r.source for r in rows} - {CORRECTIONS_SOURCE}) < 2:
        raise UserError("Fitting a risk head needs rows from at least two sources (a source column, or two files), so "
                        "its thresholds are chosen on text it was not fitted on.")
    any_risk, urgent = out_of_fold(features, rows, progress=progress)
    cut = thresholds(rows, any_risk, urgent)
    fitted = _fit(features, rows, source_weights(rows))
    return RiskHead(fingerprint=fingerprint, prompt_version=prompt_version, readout=readout,
                    any_risk=fitted.any_risk, urgent=fitted.urgent, category=fitted.category, meta=meta or {}, **cut)


def with_source(rows: Sequence[RiskRow], source: str) -> list[RiskRow]:
    return [dataclasses.replace(r, source=source) for r in rows]
