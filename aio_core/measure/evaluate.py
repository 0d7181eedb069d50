"""Accuracy of the engine on a labelled CSV (`text,label[,lang]`), the numbers behind the README's Accuracy table.

Rows labelled positive or negative are right when the label matches (uncertain or not: the label is still given).
Rows labelled neutral have no right label; they count as right when they fall in the uncertain band, which is what
the band is for. The confusion table's positive/negative cells of a row add up to that label's count; `uncertain`
counts how many of them were also marked uncertain.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aio_core.classify import Sentiment, classify
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.head_fit import KNOWN, LabelledRow, read_labelled, summary
from aio_core.prompts import detect_lang


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


def evaluate(paths: Sequence[Path | str] | Path | str, *, engine: Engine, method: str = "engine",
             progress: Callable[[int], None] | None = None) -> dict:
    """The evaluation report as a JSON-ready dict (the shape `eval --json` prints). `method` "seed" runs the seed
    article's method as written (it decodes its own prompt), "seed-fixed" the same reading only the new tokens."""
    labelled = read_labelled(paths)
    rows = [(r.text, r.label, r.lang) for r in labelled]
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
    by_domain: dict[str, list[bool]] = {}
    for row, right in zip(labelled, correct, strict=True):
        if row.label != "neutral":
            by_domain.setdefault(row.domain, []).append(right)
    domain_accuracy = {d: sum(v) / len(v) for d, v in by_domain.items()}
    risk = _risk_report(labelled, results, engine) if method == "engine" and any(r.risk for r in labelled) else None
    return {
        "risk": risk,
        "accuracy": sum(correct) / len(correct),
        "n": len(correct),
        "by_lang": {lang: {"accuracy": sum(v) / len(v), "n": len(v), "auc": _auc(scores.get(lang, []))}
                    for lang, v in sorted(groups["by_lang"].items())},
        "by_label": by_label,
        "confusion": {label: cells for label, cells in confusion.items() if label in by_label},
        "by_domain": {d: {"accuracy": a, "n": len(by_domain[d])} for d, a in domain_accuracy.items()},
        "domain_summary": summary([r for r in labelled if r.domain in domain_accuracy], domain_accuracy)
        if domain_accuracy else {},
        "head_share": sum(r.head_id is not None for r in results) / len(results),
        "uncertain_share": sum(r.uncertain for r in results) / len(results),
        "ms_per_item": 1000 * seconds / len(rows),
        "model": engine.name,
        "prompt_version": engine.prompt.version if method == "engine" else method,
        "head_id": engine.head.head_id if engine.head and method == "engine" else None,
        "uncertain_below": engine.settings.uncertain_below,
    }


def _risk_report(rows: Sequence[LabelledRow], sentiments: Sequence[Sentiment], engine: Engine) -> dict:
    """Recall and false alarms of the risk assessment on the rows with a risk column, overall and per language.
    urgent_recall: urgent rows assessed urgent; urgent_caught: urgent rows assessed concern or urgent (an alert
    either way); false_alarm: non-risk rows assessed concern or urgent."""
    from aio_core.risk import assess_risk

    marked = [i for i, r in enumerate(rows) if r.risk]
    found = assess_risk([rows[i].text for i in marked], engine=engine)
    if found and found[0] is None:
        raise UserError("AIO_RISK=off: nothing is assessed; set AIO_RISK=auto (or phrases) to evaluate risk.")

    def rates(which: list[int]) -> dict:
        truth = [rows[marked[j]].risk for j in which]
        said = [found[j].level for j in which]
        urgent = [s for t, s in zip(truth, said, strict=True) if t == "urgent"]
        risky = [s for t, s in zip(truth, said, strict=True) if t != "none"]
        safe = [s for t, s in zip(truth, said, strict=True) if t == "none"]
        raised = [t for t, s in zip(truth, said, strict=True) if s != "none"]

        def share(items: list, test) -> float | None:
            return sum(map(test, items)) / len(items) if items else None
        return {"n": len(which), "risk": len(risky), "urgent": len(urgent),
                "urgent_recall": share(urgent, lambda s: s == "urgent"),
                "urgent_caught": share(urgent, lambda s: s != "none"),
                "risk_recall": share(risky, lambda s: s != "none"),
                "precision": share(raised, lambda t: t != "none"),
                "false_alarm": share(safe, lambda s: s != "none")}

    by_lang = {}
    for lang in sorted({rows[i].lang for i in marked}):
        by_lang[lang] = rates([j for j, i in enumerate(marked) if rows[i].lang == lang])
    misses = [{"text": rows[marked[j]].text, "truth": rows[marked[j]].risk, "said": found[j].level,
               "score": round(found[j].score, 3)} for j in range(len(marked))
              if (rows[marked[j]].risk == "none") != (found[j].level == "none")]
    return {**rates(list(range(len(marked)))), "by_lang": by_lang, "version": found[0].version if found else None,
            "mistakes": misses}


def _share(value: float | None) -> str:
    return "   -" if value is None else f"{value:.3f}"


def format_report(report: dict) -> str:
    """The human-readable table printed before the JSON line."""
    lines = [f"model {report['model']}  prompt {report['prompt_version']}  "
             f"head {report['head_id'] or 'none (zero-shot)'}  uncertain below {report['uncertain_below']:.2f}",
             f"accuracy {report['accuracy']:.3f} on {report['n']} texts, {report['ms_per_item']:.0f} ms per text, "
             f"{report['uncertain_share']:.1%} marked uncertain", "", "language  accuracy      n     auc"]
    for lang, v in report["by_lang"].items():
        auc = f"{v['auc']:.3f}" if v["auc"] is not None else "   -"
        lines.append(f"{lang:8s}  {v['accuracy']:8.3f}  {v['n']:5d}  {auc:>6s}")
    if len(report["by_domain"]) > 1:
        lines += ["", "domain                      accuracy      n"]
        lines += [f"{d[:26]:26s}  {v['accuracy']:8.3f}  {v['n']:5d}" for d, v in report["by_domain"].items()]
        lines += [f"{lang}: mean over {v['domains']} domains {v['mean']:.3f}, worst {v['worst']:.3f} "
                  f"({v['worst_domain']})" for lang, v in report["domain_summary"].items()]
    lines += ["", "true label   -> positive  negative   (uncertain)   accuracy"]
    for label, cells in report["confusion"].items():
        lines.append(f"{label:12s}    {cells['positive']:8d}  {cells['negative']:8d}   ({cells['uncertain']:8d})"
                     f"   {report['by_label'][label]['accuracy']:8.3f}")
    risk = report.get("risk")
    if risk:
        lines += ["", f"risk ({risk['version']}): {risk['risk']} risk rows ({risk['urgent']} urgent) of {risk['n']}",
                  "scope   urgent recall  urgent caught  risk recall  precision  false alarms"]
        for name, r in [("all", risk), *risk["by_lang"].items()]:
            lines.append(f"{name:6s}  {_share(r['urgent_recall']):>13s}  {_share(r['urgent_caught']):>13s}  "
                         f"{_share(r['risk_recall']):>11s}  {_share(r['precision']):>9s}  "
                         f"{_share(r['false_alarm']):>12s}")
        for miss in risk["mistakes"][:10]:
            lines.append(f"  {miss['truth']:>7s} -> {miss['said']:7s} {miss['score']:.3f}  {miss['text'][:70]}")
    return "\n".join(lines)
