"""The leave-one-domain-out study behind every label-quality choice: prompts, the head's readouts, the head plus k
corrections, calibration and the uncertain band, per domain, with the mean and worst domain per language. The fitting
itself (rows, cached features, readout choice) is `aio_core/head_fit.py`, which the product uses too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from aio_core.classify import sigmoid
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.head_fit import (
    LabelledRow,
    Scores,
    candidate_readouts,
    choose_lodo,
    choose_readouts,
    domains_of,
    features,
    head_lodo,
    negative_rows,
    per_domain,
    polar_rows,
    summary,
)
from aio_core.heads import expected_calibration_error, reliability
from aio_core.prompts import get_prompt


def with_prompt(engine: Engine, version: str) -> Engine:
    """The same loaded model under another prompt version, zero-shot (nothing is loaded twice)."""
    return dataclasses.replace(engine, prompt=get_prompt(version), prepared={}, head=None)


def calibration(rows: Sequence[LabelledRow], p_negative: np.ndarray) -> dict[str, object]:
    """Expected calibration error and the reliability table over the positive/negative rows."""
    polar = polar_rows(rows)
    truth = negative_rows(rows)[polar]
    p = np.asarray(p_negative)[polar]
    return {"ece": expected_calibration_error(p, truth), "reliability": reliability(p, truth)}


def band_table(rows: Sequence[LabelledRow], p_negative: np.ndarray,
               cuts: Sequence[float] = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85)) -> list[dict[str, float]]:
    """For each candidate uncertain band (confidence below the cut): the share of labels in it and the accuracy of
    those left outside it: the evidence behind AIO_UNCERTAIN_BELOW."""
    polar = polar_rows(rows)
    p = np.asarray(p_negative)[polar]
    confidence = np.maximum(p, 1 - p)
    right = (p >= 0.5) == negative_rows(rows)[polar]
    table = []
    for cut in cuts:
        outside = confidence >= cut
        table.append({"below": cut, "in_band": float(1 - outside.mean()),
                      "accuracy_outside": float(right[outside].mean()) if outside.any() else float("nan")})
    return table


def study(rows: Sequence[LabelledRow], *, engine: Engine, prompts: Sequence[str], corrections: Sequence[int],
          cache: Path | None, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The leave-one-domain-out report: zero-shot per prompt, the per-language prompt choice, the learned head on
    the engine's prompt (readout chosen per language), the head plus k corrections from the held-out domain, and
    calibration of zero-shot vs head. One forward pass over the rows per prompt (cached)."""
    if len(domains_of(rows)) < 2:
        raise UserError("Leave-one-domain-out needs at least two domains; add a domain column or more files.")
    columns: dict[str, Scores] = {}
    zero_shot_p: np.ndarray | None = None
    for version in prompts:
        other = with_prompt(engine, version)
        tick = (lambda done, v=version: progress(v, done, len(rows))) if progress else None
        readouts = candidate_readouts(engine.backend.layers) if version == engine.prompt.version else ()
        if version == engine.prompt.version and not engine.backend.reads_hidden_states:
            readouts = ()
        feats = features(rows, engine=other, readouts=readouts, cache=cache, progress=tick)
        columns[version] = per_domain(rows, sigmoid(feats.log_odds))
        if version == engine.prompt.version:
            base, zero_shot_p = feats, sigmoid(feats.log_odds)
    chosen, picks = choose_lodo(rows, {v: columns[v] for v in prompts})
    columns["chosen prompt"] = chosen
    report: dict = {"model": engine.name, "fingerprint": engine.fingerprint, "prompt_version": engine.prompt.version,
                    "rows": len(rows), "prompt_picks": picks}
    calibrations = {"zero-shot": calibration(rows, zero_shot_p)}
    bands = {"zero-shot": band_table(rows, zero_shot_p)}
    if base.hidden is not None:
        choice, tables = choose_readouts(rows, base)
        names = {which: f"{r.kind} L{r.layer}" for which, r in enumerate(base.readouts)}
        for which, table in tables.items():
            columns[f"head ({names[which]})"] = table
        # The readout for each held-out domain is chosen on the other domains of its language, like everything else.
        lodo, picks = choose_lodo(rows, {names[w]: t for w, t in tables.items()})
        columns["head"] = lodo
        by_name = {name: which for which, name in names.items()}
        report["readout_choice"] = {lang: names[w] for lang, w in choice.items()}
        report["readout_picks"] = picks
        held = np.full(len(rows), 0.5)
        domain = np.array([r.domain for r in rows])
        for which in tables:
            p = head_lodo(rows, base, which)[1]
            for d, name in picks.items():
                if by_name[name] == which:
                    held[domain == d] = p[domain == d]
        calibrations["head"] = calibration(rows, held)
        bands["head"] = band_table(rows, held)
        for k in corrections:
            if k == 0:
                continue
            taught = {which: head_lodo(rows, base, which, corrections=k)[0] for which in tables}
            columns[f"head + {k} corrections"] = {d: taught[by_name[name]][d] for d, name in picks.items()}
    report["columns"] = columns
    report["summary"] = {name: summary(rows, scores) for name, scores in columns.items()}
    report["calibration"] = calibrations
    report["uncertain_band"] = bands
    return report


def format_study(report: dict) -> str:
    """The per-domain table (domains as rows, methods as columns), then mean and worst per language."""
    names = list(report["columns"])
    domains = list(next(iter(report["columns"].values())))
    width = max(len(d) for d in domains) + 2
    head = "domain".ljust(width) + "".join(f"{n[:22]:>24s}" for n in names)
    lines = [f"model {report['model']} ({report['fingerprint']})  prompt {report['prompt_version']}  "
             f"{report['rows']} rows, leave-one-domain-out", "", head]
    for d in domains:
        lines.append(d.ljust(width) + "".join(f"{report['columns'][n].get(d, float('nan')):24.3f}" for n in names))
    for lang in sorted({lang for s in report["summary"].values() for lang in s}):
        lines.append(f"{lang} mean".ljust(width) + "".join(
            f"{report['summary'][n][lang]['mean']:24.3f}" if lang in report["summary"][n] else " " * 24
            for n in names))
        lines.append(f"{lang} worst".ljust(width) + "".join(
            f"{report['summary'][n][lang]['worst']:24.3f}" if lang in report["summary"][n] else " " * 24
            for n in names))
    if "readout_choice" in report:
        lines.append(f"\nhead readout per language: {report['readout_choice']}")
    for name, cal in report["calibration"].items():
        lines.append(f"{name}: expected calibration error {cal['ece']:.3f}; reliability " + ", ".join(
            f"{b['from']:.1f}-{b['to']:.1f}: n={b['n']} conf {b['confidence']:.2f} acc {b['accuracy']:.2f}"
            for b in cal["reliability"]))
    for name, table in report["uncertain_band"].items():
        lines.append(f"{name} uncertain band: " + ", ".join(
            f"<{b['below']:.2f}: {b['in_band']:.0%} in band, {b['accuracy_outside']:.3f} right outside"
            for b in table))
    return "\n".join(lines)
