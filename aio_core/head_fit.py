"""Fitting the label head, leave-one-domain-out: labelled rows, the model's reading of them (cached), the readout each
language reads, and per-domain scores with their mean and worst per language.

Every choice here is made the same way: fit or choose on all domains but one, score the one left out, and report per
language the mean over domains AND the worst domain. A method that wins on one domain and loses on others is fitting
that domain, not getting better. `workflows/learning.py` fits and saves heads with it; `measure/domains.py` builds the
study on it.

The model is run once per (prompt, file set): each text's zero-shot log-odds and its hidden states are cached under
`data/cache/` (keyed by the weights' fingerprint, the prompt, the readouts and the texts' sha256), kept every
`CACHE_CHUNK` texts, so a study of many methods costs one pass per prompt and a stopped fit resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aio_core.backends import Readout
from aio_core.classify import read, sigmoid
from aio_core.csvfile import inspect_csv, iter_rows
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.heads import HeadPart, fit
from aio_core.prompts import detect_lang
from db.labels import RISK_LEVELS

KNOWN = ("positive", "negative", "neutral")
# How much one correction weighs against one row of the base set when a head is refitted: a deployment's own
# corrections describe its texts better than any public set (learning curve in the README, Accuracy).
CORRECTION_WEIGHT = 5.0
CACHE_CHUNK = 256  # texts read between two saves of the feature cache


@dataclass(frozen=True)
class LabelledRow:
    text: str
    label: str  # positive | negative | neutral
    lang: str
    domain: str
    risk: str | None = None  # none | concern | urgent, when the file has a risk column


def read_labelled(paths: Sequence[Path | str] | Path | str) -> list[LabelledRow]:
    """Rows of `text,label[,lang][,domain][,risk]` files. Without a domain column a file is one domain per language,
    named after the file (`sentiment_dev_600/en`). Raises UserError for missing columns or unknown labels."""
    rows: list[LabelledRow] = []
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        info = inspect_csv(path)
        missing = [c for c in ("text", "label") if c not in info.header]
        if missing:
            raise UserError(f"{info.name} lacks the column(s) {', '.join(missing)}; an evaluation file needs "
                            f"text,label[,lang][,domain] (it has: {', '.join(info.header)}).")
        bad = []
        for _, line, row in iter_rows(info):
            label = row["label"].strip().lower()
            risk = (row.get("risk") or "").strip().lower() or None
            if label not in KNOWN or risk not in (None, *RISK_LEVELS):
                bad.append(f"line {line}: {row['label']!r}" + (f" / risk {row['risk']!r}" if risk else ""))
                continue
            lang = (row.get("lang") or "").strip() or detect_lang(row["text"])
            domain = (row.get("domain") or "").strip() or f"{Path(info.name).stem}/{lang}"
            rows.append(LabelledRow(text=row["text"], label=label, lang=lang, domain=domain, risk=risk))
        if bad:
            raise UserError(f"{info.name} has labels other than {'/'.join(KNOWN)} (risk: none/concern/urgent) "
                            f"({'; '.join(bad[:5])}); fix or remove those rows.")
    # A domain is scored within one language: one holding two is split (`reviews/en`, `reviews/zh`).
    langs: dict[str, set[str]] = {}
    for r in rows:
        langs.setdefault(r.domain, set()).add(r.lang)
    return [dataclasses.replace(r, domain=f"{r.domain}/{r.lang}") if len(langs[r.domain]) > 1 else r for r in rows]


@dataclass(frozen=True)
class Features:
    log_odds: np.ndarray  # [rows] zero-shot, calibrated as the prompt says
    hidden: np.ndarray | None  # [rows, readouts, size]
    readouts: tuple[Readout, ...]


def candidate_readouts(layers: int) -> tuple[Readout, ...]:
    """The hidden states a head may read, chosen per language leave-one-domain-out: the answer position at 5/6 of
    the depth, and the mean over the text's tokens at half the depth (layers 20 and 12 of 24). On the eval model
    these won among layers 8-24 of each kind (README, Accuracy)."""
    return Readout(kind="answer", layer=max(1, round(layers * 5 / 6))), Readout(kind="mean", layer=max(1, layers // 2))


def features(rows: Sequence[LabelledRow], *, engine: Engine, readouts: Sequence[Readout] = (),
             cache: Path | None = None, progress: Callable[[int], None] | None = None) -> Features:
    """The model's reading of every row (one forward pass each). With `cache`, each text read by these weights with
    this prompt, these readouts and this token budget is kept (keyed by its sha256), so a study that adds rows reads
    only the new ones."""
    texts = [r.text for r in rows]
    if cache is None:
        reading = read(texts, engine=engine, readouts=readouts, progress=progress)
        return Features(log_odds=reading.log_odds, hidden=reading.hidden, readouts=tuple(readouts))
    spec = "+".join(f"{r.kind}{r.layer}" for r in readouts) or "none"
    path = cache / (f"{engine.fingerprint}__{engine.prompt.version}__{spec}__"
                    f"t{engine.settings.max_input_tokens}.npz")
    keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()[:24] for t in texts]
    known: dict[str, int] = {}
    log_odds, hidden = np.zeros(0), np.zeros((0, len(readouts), 0), dtype=np.float32)
    if path.is_file():
        stored = np.load(path)
        known = {k: i for i, k in enumerate(stored["keys"].tolist())}
        log_odds, hidden = stored["log_odds"], stored["hidden"]
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    first = {k: t for k, t in zip(keys, texts, strict=True)}
    missing.sort(key=lambda k: len(first[k]))  # similar lengths read together, as `read` batches them
    already = len(keys) - sum(1 for k in keys if k not in known)
    # Kept after every chunk, so a fit that is stopped (a restart, a crash) reads only what it had not read yet.
    for start in range(0, len(missing), CACHE_CHUNK):
        chunk = missing[start:start + CACHE_CHUNK]
        tick = (lambda done, base=already + start: progress(base + done)) if progress else None
        reading = read([first[k] for k in chunk], engine=engine, readouts=readouts, progress=tick)
        new_hidden = reading.hidden if readouts else np.zeros((len(chunk), 0, 0), dtype=np.float32)
        hidden = new_hidden if not known else np.concatenate([hidden, new_hidden.astype(hidden.dtype)])
        log_odds = np.concatenate([log_odds, reading.log_odds])
        known |= {k: len(known) + i for i, k in enumerate(chunk)}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.npz")
        np.savez(partial, keys=np.array(list(known)), log_odds=log_odds, hidden=hidden)
        partial.replace(path)
    index = np.array([known[k] for k in keys], dtype=int)
    return Features(log_odds=log_odds[index], hidden=hidden[index] if readouts else None, readouts=tuple(readouts))


# ---- per-domain scoring -------------------------------------------------------------------------------------------

Scores = dict[str, float]  # domain -> accuracy


def polar_rows(rows: Sequence[LabelledRow]) -> np.ndarray:
    return np.array([r.label != "neutral" for r in rows])


def negative_rows(rows: Sequence[LabelledRow]) -> np.ndarray:
    return np.array([r.label == "negative" for r in rows])


def domains_of(rows: Sequence[LabelledRow]) -> dict[str, str]:
    """domain -> language, in first-seen order (a domain is in one language)."""
    found: dict[str, str] = {}
    for r in rows:
        found.setdefault(r.domain, r.lang)
    return found


def per_domain(rows: Sequence[LabelledRow], p_negative: np.ndarray) -> Scores:
    """Accuracy per domain over its positive/negative rows."""
    right = (np.asarray(p_negative) >= 0.5) == negative_rows(rows)
    polar, domain = polar_rows(rows), np.array([r.domain for r in rows])
    return {d: float(right[(domain == d) & polar].mean()) for d in domains_of(rows) if ((domain == d) & polar).any()}


def fit_part(lang: str, feats: Features, which: int, train: np.ndarray, negative: np.ndarray,
             weights: np.ndarray | None = None) -> HeadPart:
    """One language's readout, fitted on the `train` rows (of every language: more data beat per-language fits)."""
    mean, scale, w, b = fit(feats.hidden[train, which], feats.log_odds[train], negative[train],
                            weights=None if weights is None else weights[train])
    return HeadPart(lang=lang, readout=feats.readouts[which], mean=mean, scale=scale, weights=w, bias=b)


def head_lodo(rows: Sequence[LabelledRow], feats: Features, which: int, *, corrections: int = 0, draws: int = 5,
              correction_weight: float = CORRECTION_WEIGHT) -> tuple[Scores, np.ndarray]:
    """Per-domain accuracy of a head reading `feats.readouts[which]`, fitted on the other domains (plus
    `corrections` rows of the held-out domain, weighted as a deployment's corrections are, averaged over `draws`
    random draws and scored on the rest), and the held-out p_negative of every row (without corrections)."""
    if feats.hidden is None:
        raise UserError("A label head needs hidden states, and this backend gives none.")
    polar, negative = polar_rows(rows), negative_rows(rows)
    domain = np.array([r.domain for r in rows])
    scores: Scores = {}
    held_out = np.full(len(rows), 0.5)
    for d, lang in domains_of(rows).items():
        inside = (domain == d) & polar
        if not inside.any():
            continue
        results = []
        for draw in range(draws if corrections else 1):
            taught = np.zeros(len(rows), dtype=bool)
            if corrections:
                pool = np.flatnonzero(inside)
                taught[np.random.default_rng(draw).choice(pool, size=min(corrections, len(pool) - 1),
                                                          replace=False)] = True
            train = ((domain != d) & polar) | taught
            part = fit_part(lang, feats, which, train, negative, np.where(taught, correction_weight, 1.0))
            test = inside & ~taught
            p = sigmoid(part.log_odds(feats.hidden[test, which], feats.log_odds[test]))
            results.append(float(((p >= 0.5) == negative[test]).mean()))
            if not corrections:
                held_out[test] = p
        scores[d] = float(np.mean(results))
    return scores, held_out


def merit(scores: Sequence[float]) -> float:
    """How a method is ranked on a set of domains: the mean of their mean and their worst, so one strong domain cannot
    hide a weak one."""
    return (float(np.mean(scores)) + float(np.min(scores))) / 2 if len(scores) else 0.0


def choose_lodo(rows: Sequence[LabelledRow], candidates: dict[str, Scores]) -> tuple[Scores, dict[str, str]]:
    """Leave-one-domain-out choice among candidate methods, per language: for each domain, the candidate with the
    best `merit` over the OTHER domains of its language is picked and scored on it. Returns the scores and the picks."""
    languages = domains_of(rows)
    scores: Scores = {}
    picks: dict[str, str] = {}
    for d, lang in languages.items():
        others = [o for o, other_lang in languages.items() if other_lang == lang and o != d]
        best = max(candidates, key=lambda name: merit([candidates[name][o] for o in others]))
        picks[d], scores[d] = best, candidates[best][d]
    return scores, picks


def summary(rows: Sequence[LabelledRow], scores: Scores) -> dict[str, dict[str, object]]:
    """Per language: the mean over domains, the worst domain and its name."""
    out: dict[str, dict[str, object]] = {}
    for lang in sorted(set(domains_of(rows).values())):
        mine = {d: s for d, s in scores.items() if domains_of(rows)[d] == lang}
        worst = min(mine, key=mine.get)
        out[lang] = {"mean": float(np.mean(list(mine.values()))), "worst": mine[worst], "worst_domain": worst,
                     "domains": len(mine)}
    return out


def choose_readouts(rows: Sequence[LabelledRow], feats: Features) -> tuple[dict[str, int], dict[int, Scores]]:
    """Per language, the candidate readout whose leave-one-domain-out results are best (the mean of the language's
    mean and worst domain, so one strong domain cannot hide a weak one). Returns the choice and every candidate's
    per-domain scores."""
    tables = {which: head_lodo(rows, feats, which)[0] for which in range(len(feats.readouts))}
    choice = {}
    languages = domains_of(rows)
    for lang in sorted(set(languages.values())):
        mine = [d for d, other in languages.items() if other == lang]
        choice[lang] = max(tables, key=lambda which, mine=mine: merit([tables[which][d] for d in mine]))
    return choice, tables


def fit_head_parts(rows: Sequence[LabelledRow], feats: Features, choice: dict[str, int],
                   weights: np.ndarray | None = None) -> dict[str, HeadPart]:
    """The final head: each language's chosen readout fitted on every polar row."""
    train = polar_rows(rows)
    return {lang: fit_part(lang, feats, which, train, negative_rows(rows), weights) for lang, which in choice.items()}
