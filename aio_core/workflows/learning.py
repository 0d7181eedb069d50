"""Labels that learn: fit the label head on labelled files (and the corrections people made), re-score stored
messages with it, and keep what each label was before; fit the risk head on risk files (and the risk reviews people
made).

The head is chosen the way every quality decision is made (`aio_core.measure.domains`): its readout per language is
the one whose leave-one-domain-out results are best, and the report it prints is leave-one-domain-out too. The final
head is then fitted on every row, corrections weighted `CORRECTION_WEIGHT` times a file row.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine as Database

from aio_core.backends import Readout
from aio_core.classify import classify
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.heads import Head, save_head
from aio_core.measure.domains import (
    CORRECTION_WEIGHT,
    LabelledRow,
    candidate_readouts,
    choose_lodo,
    choose_readouts,
    domains_of,
    features,
    fit_head_parts,
    read_labelled,
    summary,
)
from aio_core.prompts import detect_lang
from aio_core.risk_fit import CORRECTION_WEIGHT as RISK_REVIEW_WEIGHT
from aio_core.risk_fit import CORRECTIONS_SOURCE, RiskRow, fit_risk_head, read_risk_rows, shipped_files
from aio_core.risk_head import BUDGETS, RiskHead, save_risk_head
from aio_core.situation import SituationHead, fit_situation_head, read_situation_rows, save_situation_head
from aio_core.workflows import alert_rule, label_fields
from db.corrections import apply_rescore, corrections_in_force, messages_to_rescore, risk_reviews_in_force
from db.session import reading, writing

CORRECTIONS_DOMAIN = "corrections"


def taught_rows(db: Database) -> list[LabelledRow]:
    """The corrections in force as labelled rows (their own domain, never used to choose the readout)."""
    with reading(db) as session:
        taught = corrections_in_force(session)
    return [LabelledRow(text=t.text, label=t.label, lang=detect_lang(t.text), domain=CORRECTIONS_DOMAIN)
            for t in taught]


def fit_label_head(paths: Sequence[Path | str], *, engine: Engine, db: Database | None = None,
                   progress: Callable[[int], None] | None = None) -> tuple[Head, Path]:
    """Fit, save and return the head for the engine's weights and prompt (and where it was saved). With `db`, the
    corrections stored there are added to the files' rows."""
    if not engine.backend.reads_hidden_states:
        raise UserError("This backend gives no hidden states, so no label head can be fitted or used with it; "
                        "fit the head with the in-process backend on the same weights.")
    base = read_labelled(paths)
    taught = taught_rows(db) if db is not None else []
    if len({r.domain for r in base}) < 2:
        raise UserError("Fitting a head needs at least two domains (a domain column, or two files) so its readout "
                        "is chosen on text it was not fitted on.")
    zero_shot = engine.with_head(None)
    rows = [*base, *taught]
    feats = features(rows, engine=zero_shot, readouts=candidate_readouts(engine.backend.layers),
                     cache=engine.settings.cache_dir, progress=progress)
    chosen_on = np.arange(len(base))
    base_feats = dataclasses.replace(feats, log_odds=feats.log_odds[chosen_on], hidden=feats.hidden[chosen_on])
    choice, tables = choose_readouts(base, base_feats)
    weights = np.array([CORRECTION_WEIGHT if r.domain == CORRECTIONS_DOMAIN else 1.0 for r in rows])
    parts = fit_head_parts(rows, feats, choice, weights)
    # Reported as measured: each held-out domain scored with the readout chosen without it (nested).
    nested, _ = choose_lodo(base, {str(which): table for which, table in tables.items()})
    lodo = summary(base, nested)
    files = {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16] for p in paths}
    meta = {"fitted_at": datetime.now(UTC).isoformat(timespec="seconds"), "files": files, "rows": len(base),
            "domains": len(domains_of(base)), "corrections": len(taught),
            "correction_weight": CORRECTION_WEIGHT, "model": engine.name,
            "readouts": {lang: f"{feats.readouts[w].kind} L{feats.readouts[w].layer}" for lang, w in choice.items()},
            "leave_one_domain_out": lodo}
    head = Head(fingerprint=engine.fingerprint, prompt_version=engine.prompt.version, parts=parts, meta=meta)
    return head, save_head(head, engine.settings.heads_dir)


def rescore(*, engine: Engine, db: Database, by: str, batch_id: int | None = None, handle: str | None = None,
            progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Label one batch's or one person's messages again with the engine as it is now (its head included). The old
    labels are kept as versions; corrections stay in force. Returns (messages, labels that changed)."""
    if not by.strip():
        raise UserError("Say who is re-scoring (a name or initials), so the label history shows it.")
    with reading(db) as session:
        pending = messages_to_rescore(session, batch_id=batch_id, handle=handle)
    if not pending:
        raise UserError("Nothing to re-score: that batch or person has no labelled messages.")
    labels = classify([text for _, text in pending], engine=engine, progress=progress)
    new = {}
    for (message_id, _), sentiment in zip(pending, labels, strict=True):
        new[message_id] = {k: v for k, v in label_fields(sentiment, engine).items() if not k.startswith("risk")}
    rule = alert_rule(engine.settings, db)
    with writing(db) as session:
        done = apply_rescore(session, new, scope="batch" if batch_id is not None else "person",
                             target=str(batch_id if batch_id is not None else handle), by=by.strip(), rule=rule)
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


def fit_risk_head_from(paths: Sequence[Path | str], *, engine: Engine, db: Database | None = None,
                       progress: Callable[[int], None] | None = None) -> tuple[RiskHead, Path]:
    """Fit, save and return the risk head for the engine's weights and prompt from risk CSVs (the shipped set when
    `paths` is empty) and, with `db`, the risk reviews stored there."""
    if not engine.backend.reads_hidden_states:
        raise UserError("This backend gives no hidden states, so no risk head can be fitted or used with it; fit "
                        "it with the in-process backend on the same weights.")
    files = [Path(p) for p in paths] or shipped_files()
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
    return head, save_risk_head(head, engine.settings.heads_dir)


def fit_situation_head_from(paths: Sequence[Path | str], *, engine: Engine,
                            progress: Callable[[int], None] | None = None) -> tuple[SituationHead, Path]:
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
    return head, save_situation_head(head, engine.settings.heads_dir)
