"""Accuracy of the engine on a labelled CSV (`text,label[,lang]`), the numbers behind the README's Accuracy table.

Rows labelled positive or negative are right when the label matches (uncertain or not: the label is still given).
Rows labelled neutral have no right label; they count as right when they fall in the uncertain band, which is what
the band is for. The confusion table's positive/negative cells of a row add up to that label's count; `uncertain`
counts how many of them were also marked uncertain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from aio_core.classify import Sentiment, classify
from aio_core.csvfile import inspect_csv, iter_rows
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.prompts import detect_lang

KNOWN = ("positive", "negative", "neutral")


def read_labelled(path: Path | str) -> list[tuple[str, str, str]]:
    """(text, label, lang) rows; raises UserError for missing columns or unknown labels, with line numbers."""
    info = inspect_csv(path)
    missing = [c for c in ("text", "label") if c not in info.header]
    if missing:
        raise UserError(f"{info.name} lacks the column(s) {', '.join(missing)}; an evaluation file needs "
                        f"text,label[,lang] (it has: {', '.join(info.header)}).")
    rows, bad = [], []
    for _, line, row in iter_rows(info):
        label = row["label"].strip().lower()
        if label not in KNOWN:
            bad.append(f"line {line}: {row['label']!r}")
            continue
        rows.append((row["text"], label, (row.get("lang") or "").strip() or detect_lang(row["text"])))
    if bad:
        raise UserError(f"{info.name} has labels other than {'/'.join(KNOWN)} ({'; '.join(bad[:5])}); "
                        "fix or remove those rows.")
    return rows


def _auc(scores: list[tuple[float, bool]]) -> float | None:
    """Probability that a negative text gets a higher p_negative than a positive one (threshold-free)."""
    pos = sorted(p for p, negative in scores if negative)
    neg = sorted(p for p, negative in scores if not negative)
    if not pos or not neg:
        return None
    wins = 0.0
    for p in pos:
        wins += sum(1.0 if p > q else 0.5 if p == q else 0.0 for q in neg)
    return wins / (len(pos) * len(neg))


METHODS = ("engine", "seed", "seed-fixed")


def _seed_results(texts: list[str], engine: Engine, *, as_written: bool,
                  progress: Callable[[int], None] | None) -> list[Sentiment]:
    """The seed article's method as a baseline row: a bare label (confidence 1, never uncertain)."""
    from aio_core.backends.seed import seed_classify

    results = []
    for i, text in enumerate(texts, 1):
        label = seed_classify(engine.backend, text, as_written=as_written)
        results.append(Sentiment(label=label, confidence=1.0, p_negative=float(label == "negative"), uncertain=False,
                                 prompt_version="seed", lang=detect_lang(text), truncated=False))
        if progress:
            progress(i)
    return results


def evaluate(path: Path | str, *, engine: Engine, method: str = "engine",
             progress: Callable[[int], None] | None = None) -> dict:
    """The evaluation report as a JSON-ready dict (the shape `eval --json` prints). `method` "seed" runs the seed
    article's method as written (it decodes its own prompt), "seed-fixed" the same reading only the new tokens."""
    rows = read_labelled(path)
    texts = [text for text, _, _ in rows]
    started = time.perf_counter()
    if method == "engine":
        results = classify(texts, engine=engine, progress=progress)
    else:
        results = _seed_results(texts, engine, as_written=method == "seed", progress=progress)
    seconds = time.perf_counter() - started
    confusion = {label: {"positive": 0, "negative": 0, "uncertain": 0} for label in KNOWN}
    groups: dict[str, dict[str, list[bool]]] = {"by_lang": {}, "by_label": {}}
    scores: dict[str, list[tuple[float, bool]]] = {}
    correct: list[bool] = []
    for (_, label, lang), result in zip(rows, results, strict=True):
        right = result.uncertain if label == "neutral" else result.label == label
        correct.append(right)
        confusion[label][result.label] += 1
        confusion[label]["uncertain"] += result.uncertain
        groups["by_lang"].setdefault(lang, []).append(right)
        groups["by_label"].setdefault(label, []).append(right)
        if label != "neutral":
            scores.setdefault(lang, []).append((result.p_negative, label == "negative"))
    by_label = {label: {"accuracy": sum(v) / len(v), "n": len(v),
                        "uncertain_share": confusion[label]["uncertain"] / len(v)}
                for label, v in groups["by_label"].items()}
    return {
        "accuracy": sum(correct) / len(correct),
        "n": len(correct),
        "by_lang": {lang: {"accuracy": sum(v) / len(v), "n": len(v), "auc": _auc(scores.get(lang, []))}
                    for lang, v in sorted(groups["by_lang"].items())},
        "by_label": by_label,
        "confusion": {label: cells for label, cells in confusion.items() if label in by_label},
        "uncertain_share": sum(r.uncertain for r in results) / len(results),
        "ms_per_item": 1000 * seconds / len(rows),
        "model": engine.name,
        "prompt_version": engine.prompt.version if method == "engine" else method,
        "uncertain_below": engine.settings.uncertain_below,
    }


def format_report(report: dict) -> str:
    """The human-readable table printed before the JSON line."""
    lines = [f"model {report['model']}  prompt {report['prompt_version']}  "
             f"uncertain below {report['uncertain_below']:.2f}",
             f"accuracy {report['accuracy']:.3f} on {report['n']} texts, {report['ms_per_item']:.0f} ms per text, "
             f"{report['uncertain_share']:.1%} marked uncertain", "", "language  accuracy      n     auc"]
    for lang, v in report["by_lang"].items():
        auc = f"{v['auc']:.3f}" if v["auc"] is not None else "   -"
        lines.append(f"{lang:8s}  {v['accuracy']:8.3f}  {v['n']:5d}  {auc:>6s}")
    lines += ["", "true label   -> positive  negative   (uncertain)   accuracy"]
    for label, cells in report["confusion"].items():
        lines.append(f"{label:12s}    {cells['positive']:8d}  {cells['negative']:8d}   ({cells['uncertain']:8d})"
                     f"   {report['by_label'][label]['accuracy']:8.3f}")
    return "\n".join(lines)
