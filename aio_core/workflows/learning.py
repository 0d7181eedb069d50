"""Labels that learn: fit the label head on labelled files (and the corrections people made), re-score stored
messages with it, and keep what each label was before; fit the risk head on risk files (and the risk reviews people
made).

The head is chosen the way every quality decision is made (`aio_core.head_fit`): its readout per language is
the one whose leave-one-domain-out results are best, and the report it prints is leave-one-domain-out too. The final
head is then fitted on every row, corrections weighted `CORRECTION_WEIGHT` times a file row.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine as Database

from aio_core.backends import Readout
from aio_core.classify import classify
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.head_fit import (
    CORRECTION_WEIGHT,
    LabelledRow,
    candidate_readouts,
    choose_lodo,
    choose_readouts,
    domains_of,
    features,
    fit_head_parts,
    fit_part,
    read_labelled,
    summary,
)
from aio_core.heads import Head, find_head, head_path, save_head, shipped_files
from aio_core.prompts import detect_lang
from aio_core.risk_fit import CORRECTION_WEIGHT as RISK_REVIEW_WEIGHT
from aio_core.risk_fit import CORRECTIONS_SOURCE, RiskRow, fit_risk_head, read_risk_rows
from aio_core.risk_fit import shipped_files as shipped_risk_files
from aio_core.risk_head import BUDGETS, RiskHead, find_risk_head, save_risk_head
from aio_core.risk_head import head_path as risk_head_path
from aio_core.situation import (
    SituationHead,
    find_situation_head,
    fit_situation_head,
    read_situation_rows,
    save_situation_head,
)
from aio_core.situation import head_path as situation_head_path
from aio_core.workflows import alert_rule, label_fields
from db.corrections import apply_rescore, corrections_in_force, messages_to_rescore, risk_reviews_in_force
from db.privacy import audit
from db.session import reading, writing

CORRECTIONS_DOMAIN = "corrections"


def taught_rows(db: Database) -> list[LabelledRow]:
    """The corrections in force as labelled rows (their own domain, never used to choose the readout)."""
    with reading(db) as session:
        taught = corrections_in_force(session)
    return [LabelledRow(text=t.text, label=t.label, lang=detect_lang(t.text), domain=CORRECTIONS_DOMAIN)
            for t in taught]


def fit_label_head(paths: Sequence[Path | str] = (), *, engine: Engine, db: Database | None = None,
                   progress: Callable[[int], None] | None = None, replace: bool = True,
                   fitting_set: str | None = None) -> tuple[Head, Path]:
    """Fit, save and return the head for the engine's weights and prompt (and where it was saved), from labelled
    files (the shipped set, `aio_core/data/sentiment/`, when `paths` is empty). With `db`, the corrections stored
    there are added to the files' rows. With `replace=False` a head that appeared meanwhile (someone's own fit) is
    kept and returned instead. `fitting_set` (shipped | own) is recorded for the pages; by default it says whether
    `paths` are the shipped files."""
    if not engine.backend.reads_hidden_states:
        raise UserError("This backend gives no hidden states, so no label head can be fitted or used with it; "
                        "fit the head with the in-process backend on the same weights.")
    paths = list(paths) or shipped_files()
    base = read_labelled(paths)
    taught = taught_rows(db) if db is not None else []
    feats, choice, tables = _read_and_choose(base, taught, engine=engine, progress=progress)
    return _fit_and_save(paths, base, taught, feats, choice, tables, engine=engine, replace=replace,
                         fitting_set=fitting_set)


def _read_and_choose(base: Sequence[LabelledRow], taught: Sequence[LabelledRow], *, engine: Engine,
                     progress: Callable[[int], None] | None = None):
    """The model's reading of the file rows and the corrections (cached), and each language's readout with every
    candidate's leave-one-domain-out table, chosen on the file rows alone (the corrections are no domain)."""
    if len({r.domain for r in base}) < 2:
        raise UserError("Fitting a head needs at least two domains (a domain column, or two files) so its readout "
                        "is chosen on text it was not fitted on.")
    feats = features([*base, *taught], engine=engine.with_head(None),
                     readouts=candidate_readouts(engine.backend.layers), cache=engine.settings.cache_dir,
                     progress=progress)
    base_feats = dataclasses.replace(feats, log_odds=feats.log_odds[:len(base)], hidden=feats.hidden[:len(base)])
    choice, tables = choose_readouts(base, base_feats)
    return feats, choice, tables


def _fit_and_save(paths: Sequence[Path | str], base: Sequence[LabelledRow], taught: Sequence[LabelledRow], feats,
                  choice: dict[str, int], tables: dict, *, engine: Engine, replace: bool,
                  fitting_set: str | None) -> tuple[Head, Path]:
    rows = [*base, *taught]
    weights = np.array([CORRECTION_WEIGHT if r.domain == CORRECTIONS_DOMAIN else 1.0 for r in rows])
    parts = fit_head_parts(rows, feats, choice, weights)
    # Reported as measured: each held-out domain scored with the readout chosen without it (nested).
    nested, _ = choose_lodo(base, {str(which): table for which, table in tables.items()})
    lodo = summary(base, nested)
    files = {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16] for p in paths}
    meta = {"fitted_at": datetime.now(UTC).isoformat(timespec="seconds"), "files": files,
            "fitting_set": fitting_set or ("shipped" if set(map(Path, paths)) == set(shipped_files()) else "own"),
            "rows": len(base),
            "domains": len(domains_of(base)), "corrections": len(taught),
            "correction_weight": CORRECTION_WEIGHT, "model": engine.name,
            "readouts": {lang: f"{feats.readouts[w].kind} L{feats.readouts[w].layer}" for lang, w in choice.items()},
            "leave_one_domain_out": lodo}
    head = Head(fingerprint=engine.fingerprint, prompt_version=engine.prompt.version, parts=parts, meta=meta)
    folder = engine.settings.heads_dir
    if not replace and (found := find_head(folder, engine.fingerprint, engine.prompt.version)) is not None:
        return found, head_path(folder, engine.fingerprint, engine.prompt.version)
    return head, save_head(head, folder)


def rescore(*, engine: Engine, db: Database, by: str, batch_id: int | None = None, handle: str | None = None,
            zero_shot: bool = False, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Label one batch's or one person's messages again with the engine as it is now (its head included), or, with
    `zero_shot`, every message these weights labelled before their head was fitted. The old labels are kept as
    versions; corrections stay in force. Returns (messages, labels that changed)."""
    if not by.strip():
        raise UserError("Say who is re-scoring (a name or initials), so the label history shows it.")
    if zero_shot and engine.head is None:
        raise UserError("These weights have no label head yet, so re-scoring would give the same labels; wait for "
                        "the fit (Admin shows it) or run python -m aio_core fit-head.")
    with reading(db) as session:
        pending = messages_to_rescore(session, batch_id=batch_id, handle=handle,
                                      zero_shot_of=engine.fingerprint if zero_shot else None)
    if not pending:
        raise UserError("Nothing to re-score: no labelled messages " + (
            "were labelled zero-shot by these weights." if zero_shot else "in that batch or person."))
    labels = classify([text for _, text in pending], engine=engine, progress=progress)
    new = {}
    for (message_id, _), sentiment in zip(pending, labels, strict=True):
        new[message_id] = {k: v for k, v in label_fields(sentiment, engine).items() if not k.startswith("risk")}
    rule = alert_rule(engine.settings, db)
    with writing(db) as session:
        scope, target = (("batch", str(batch_id)) if batch_id is not None else ("person", str(handle))
                         if handle is not None else ("zero-shot", engine.fingerprint))
        done = apply_rescore(session, new, scope=scope, target=target, by=by.strip(), rule=rule)
        return done.rows, done.changed


# ---- the risk head -------------------------------------------------------------------------------------------------

def risk_readout(engine: Engine) -> Readout:
    """The hidden state the risk head reads: the mean over the text's tokens at half the depth (layer 12 of 24),
    chosen leave-one-source-out among 8 readouts (README, Risk)."""
    return Readout(kind="mean", layer=max(1, engine.backend.layers // 2))


def reviewed_risk_rows(db: Database) -> list[RiskRow]:
    """The risk reviews in force as training rows: a reviewed risk, or a "not a risk" that fooled the reader (a
    look-alike by definition)."""
    with reading(db) as session:
        taught = risk_reviews_in_force(session)
    return [RiskRow(text=t.text, risk=t.level, category=t.category, lang=detect_lang(t.text),
                    kind="risk" if t.level != "none" else "lookalike", source=CORRECTIONS_SOURCE) for t in taught]


def fit_risk_head_from(paths: Sequence[Path | str] = (), *, engine: Engine, db: Database | None = None,
                       progress: Callable[[int], None] | None = None, replace: bool = True) -> tuple[RiskHead, Path]:
    """Fit, save and return the risk head for the engine's weights and prompt from risk CSVs (the shipped set when
    `paths` is empty) and, with `db`, the risk reviews stored there."""
    if not engine.backend.reads_hidden_states:
        raise UserError("This backend gives no hidden states, so no risk head can be fitted or used with it; fit "
                        "it with the in-process backend on the same weights.")
    files = [Path(p) for p in paths] or shipped_risk_files()
    base = read_risk_rows(files)
    taught = reviewed_risk_rows(db) if db is not None else []
    rows = [*base, *taught]
    readout = risk_readout(engine)
    feats = features(rows, engine=engine.with_head(None), readouts=(readout,), cache=engine.settings.cache_dir,
                     progress=progress)
    meta = {"fitted_at": datetime.now(UTC).isoformat(timespec="seconds"), "model": engine.name,
            "files": {str(p): hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files},
            "rows": len(base), "reviews": len(taught), "review_weight": RISK_REVIEW_WEIGHT,
            "sources": dict(Counter(r.source for r in rows)), "readout": f"{readout.kind} L{readout.layer}",
            "budgets": BUDGETS}
    head = fit_risk_head(rows, feats.hidden[:, 0], feats.log_odds, readout=readout, fingerprint=engine.fingerprint,
                         prompt_version=engine.prompt.version, meta=meta)
    folder = engine.settings.heads_dir
    if not replace and (found := find_risk_head(folder, engine.fingerprint, engine.prompt.version)) is not None:
        return found, risk_head_path(folder, engine.fingerprint, engine.prompt.version)
    return head, save_risk_head(head, folder)


def fit_situation_head_from(paths: Sequence[Path | str] = (), *, engine: Engine,
                            progress: Callable[[int], None] | None = None,
                            replace: bool = True) -> tuple[SituationHead, Path]:
    """Fit, save and return the situation head for the engine's weights and prompt from situation CSVs (the
    shipped set, `aio_core/data/situations/`, when `paths` is empty). It reads the risk head's hidden state, so a
    message is read once for all three."""
    if not engine.backend.reads_hidden_states:
        raise UserError("This backend gives no hidden states, so no situation head can be fitted or used with it; "
                        "replies use the library's general openings.")
    rows = read_situation_rows(paths)
    readout = risk_readout(engine)
    feats = features(rows, engine=engine.with_head(None), readouts=(readout,), cache=engine.settings.cache_dir,
                     progress=progress)
    meta = {"fitted_at": datetime.now(UTC).isoformat(timespec="seconds"), "model": engine.name, "rows": len(rows),
            "sources": dict(Counter(r.source for r in rows)), "readout": f"{readout.kind} L{readout.layer}"}
    head = fit_situation_head(rows, feats.hidden[:, 0], feats.log_odds, readout=readout,
                              fingerprint=engine.fingerprint, prompt_version=engine.prompt.version, meta=meta)
    folder = engine.settings.heads_dir
    if not replace and (found := find_situation_head(folder, engine.fingerprint, engine.prompt.version)) is not None:
        return found, situation_head_path(folder, engine.fingerprint, engine.prompt.version)
    return head, save_situation_head(head, folder)


# ---- learning from the corrections people made ---------------------------------------------------------------------

LEARN_FOLDS = 5
MIN_CORRECTIONS = 10  # fewer than this and a k-fold before/after says nothing


@dataclass(frozen=True)
class Learned:
    """What "Learn from corrections" did: the head refitted with every correction, and how labels did on corrections
    that each k-fold head had NOT been fitted on, before (the labels as they are now) and after."""

    corrections: int
    folds: int
    before: float  # accuracy of the engine as it was, on the corrected messages
    after: float  # accuracy of the heads fitted without each fold, on that fold
    curve: dict[int, float]  # corrections used in fitting -> accuracy on the held-out ones (the learning curve)
    head: Head
    path: Path
    fitting_set: str  # shipped | own (the files of the head in force, when they are still there)


def base_files(engine: Engine) -> list[Path]:
    """The labelled files the head in force was fitted on, when they are all still there; else the shipped set."""
    files = [Path(f) for f in (engine.head.meta.get("files", {}) if engine.head else {})]
    return files if files and all(f.is_file() for f in files) else shipped_files()


def correction_curve(base: Sequence[LabelledRow], taught: Sequence[LabelledRow], feats, choice: dict[str, int], *,
                     folds: int = LEARN_FOLDS, sizes: Sequence[int] = (0, 10, 25, 50, 100, 200, 500),
                     seed: int = 0) -> tuple[dict[int, float], np.ndarray]:
    """k-fold over the corrections: for each fold, heads fitted on the base rows plus `size` corrections drawn from
    the other folds score the fold. Returns {size: accuracy over every held-out correction} (sizes up to all of the
    other folds' corrections) and each correction's held-out p_negative with all of them."""
    from aio_core.classify import sigmoid

    n_base = len(base)
    order = np.random.default_rng(seed).permutation(len(taught))
    fold_of = np.empty(len(taught), dtype=int)
    fold_of[order] = np.arange(len(taught)) % folds
    negative = np.array([r.label == "negative" for r in taught])
    usable = sorted({min(s, len(taught) - len(taught) // folds) for s in sizes} | {len(taught) - len(taught) // folds})
    right = {size: np.zeros(len(taught), dtype=bool) for size in usable}
    held_p = np.full(len(taught), 0.5)
    rows = [*base, *taught]
    weights = np.array([1.0] * n_base + [CORRECTION_WEIGHT] * len(taught))
    negative_rows = np.array([r.label == "negative" for r in rows])
    for fold in range(folds):
        test = np.flatnonzero(fold_of == fold)
        pool = np.flatnonzero(fold_of != fold)[np.random.default_rng(seed + fold).permutation(
            int((fold_of != fold).sum()))]
        for size in usable:
            keep = np.zeros(len(rows), dtype=bool)
            keep[:n_base] = [r.label != "neutral" for r in base]
            keep[n_base + pool[:size]] = True
            # Each language's part is fitted on every row; languages that read the same hidden state share a fit.
            fitted = {which: fit_part("", feats, which, keep, negative_rows, weights)
                      for which in set(choice.values())}
            for i in test:
                which = choice.get(taught[i].lang, next(iter(choice.values())))
                part = fitted[which]
                p = float(sigmoid(part.log_odds(feats.hidden[n_base + i:n_base + i + 1, which],
                                                feats.log_odds[n_base + i:n_base + i + 1]))[0])
                right[size][i] = (p >= 0.5) == negative[i]
                if size == usable[-1]:
                    held_p[i] = p
    return {size: float(right[size].mean()) for size in usable}, held_p


def _enough_corrections(db: Database) -> list[LabelledRow]:
    """The corrections in force (each positive or negative), or one sentence when too few to learn from."""
    taught = taught_rows(db)
    if len(taught) < MIN_CORRECTIONS:
        raise UserError(f"Learning needs at least {MIN_CORRECTIONS} corrected labels to show what it gains on ones "
                        f"it was not fitted on; there are {len(taught)} so far. Correct labels on Chat, Screen or "
                        "Trends first.")
    return taught


def corrections_curve_on(base: Sequence[LabelledRow], *, engine: Engine, db: Database,
                         folds: int = LEARN_FOLDS) -> tuple[int, dict[int, float]]:
    """The learning curve of the store's corrections on top of `base` (study --with-corrections): how many
    corrections there are, and {corrections fitted on: accuracy on the held-out ones}, k-fold."""
    taught = _enough_corrections(db)
    feats, choice, _ = _read_and_choose(base, taught, engine=engine)
    return len(taught), correction_curve(base, taught, feats, choice, folds=folds)[0]


def learn_from_corrections(*, engine: Engine, db: Database, by: str, folds: int = LEARN_FOLDS,
                           progress: Callable[[int], None] | None = None) -> Learned:
    """Refit the label head with the corrections in force (weighted `CORRECTION_WEIGHT` times a file row) on the
    files the head in force was fitted on (or the shipped set), save it, and report k-fold: how the labels as they
    were and the refitted heads did on corrections each head was not fitted on. The engine of this process uses the
    new head at once."""
    from aio_core.engine import refresh_heads

    if not engine.backend.reads_hidden_states:
        raise UserError("This backend gives no hidden states, so no label head can be fitted or used with it; "
                        "fit the head with the in-process backend on the same weights.")
    taught = _enough_corrections(db)
    files = base_files(engine)
    base = read_labelled(files)
    before_labels = classify([r.text for r in taught], engine=engine)
    before = float(np.mean([s.label == r.label for s, r in zip(before_labels, taught, strict=True)]))
    # One reading and one readout choice serve the k-fold report and the head that is saved.
    feats, choice, tables = _read_and_choose(base, taught, engine=engine, progress=progress)
    curve, _ = correction_curve(base, taught, feats, choice, folds=folds)
    head, path = _fit_and_save(files, base, taught, feats, choice, tables, engine=engine, replace=True,
                               fitting_set=None)
    refresh_heads(engine.settings)
    after = curve[max(curve)]
    with writing(db) as session:
        audit(session, by, "head.learn", head.head_id, f"{len(taught)} corrections; {folds}-fold {before:.3f} -> "
                                                     f"{after:.3f}")
    return Learned(corrections=len(taught), folds=folds, before=before, after=after, curve=curve,
                   head=head, path=path, fitting_set=head.meta["fitting_set"])
