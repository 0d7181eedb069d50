"""Risk read leave-one-source-out: what the phrase lists, the learned head and both together catch on messages from a
source nobody fitted on, and what they raise on texts that are not a risk.

For every source of the risk files (a writer's set, a public set), the head is fitted on the other sources (its
thresholds chosen on out-of-fold scores of those, as `fit-head --risk` does) and read on the one left out; the phrase
lists need no fitting. Reported per language, mean AND worst over sources: risk caught (concern or urgent raised on a
risk message), urgent caught as urgent, recall per category, false alarms on look-alikes and on ordinary rows. Files
passed as `--ordinary` (every row a non-risk text, e.g. the multi-domain sentiment file) are never fitted on: they
are read by the head fitted on every source, and give the false-alarm rate on ordinary text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aio_core.csvfile import inspect_csv, iter_rows
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.head_fit import features
from aio_core.heads import features_of
from aio_core.prompts import detect_lang
from aio_core.risk import LEVELS, PhraseList, load_phrases
from aio_core.risk_fit import RiskRow, _fit, out_of_fold, source_weights, thresholds
from aio_core.risk_head import CATEGORIES
from aio_core.workflows.learning import risk_readout

STUDENTS = "students-"  # sources in a student's voice (ours); the summary is over these, public sets are listed apart
PREVIOUS_PHRASES = Path(__file__).resolve().parent.parent / "data" / "risk_phrases-2.json"


def read_ordinary(paths: Sequence[Path | str]) -> list[RiskRow]:
    """Rows of CSVs with a text column, every one a non-risk ordinary text (source: the domain column, or the
    file)."""
    rows = []
    for path in paths:
        info = inspect_csv(path)
        if "text" not in info.header:
            raise UserError(f"{info.name} has no text column; an ordinary-text file needs text[,lang][,domain].")
        for _, _, row in iter_rows(info):
            rows.append(RiskRow(text=row["text"], risk="none", category=None,
                                lang=(row.get("lang") or "").strip() or detect_lang(row["text"]), kind="ordinary",
                                source=(row.get("domain") or "").strip() or Path(info.name).stem))
    return rows


@dataclass(frozen=True)
class Said:
    level: np.ndarray  # [rows] none | concern | urgent
    category: np.ndarray  # [rows] the category given, "" for none


def _phrases(rows: Sequence[RiskRow], phrases: PhraseList) -> Said:
    found = [phrases.match(r.text) for r in rows]
    return Said(np.array([m[0].level if m else "none" for m in found]),
                np.array([m[0].category if m else "" for m in found]))


def _both(head: Said, floor: Said) -> Said:
    """The more severe of the two, as `risk.assess_risk` decides."""
    rank = {level: i for i, level in enumerate(LEVELS)}
    take = np.array([rank[f] >= rank[h] and f != "none" for h, f in zip(head.level, floor.level, strict=True)])
    return Said(np.where(take, floor.level, head.level), np.where(take, floor.category, head.category))


def _head_said(features_: np.ndarray, train: Sequence[RiskRow], train_features: np.ndarray,
               langs: Sequence[str], folds: int) -> Said:
    any_oof, urgent_oof = out_of_fold(train_features, train, folds=folds)
    cut = thresholds(train, any_oof, urgent_oof)
    fitted = _fit(train_features, train, source_weights(train))
    any_risk, urgent, category = fitted.any_risk(features_), fitted.urgent(features_), fitted.category(features_)
    level = []
    for i, lang in enumerate(langs):
        concern_at = cut["concern_at"].get(lang, max(cut["concern_at"].values()))
        urgent_at = cut["urgent_at"].get(lang, max(cut["urgent_at"].values()))
        level.append("urgent" if urgent[i] >= urgent_at else "concern" if any_risk[i] >= concern_at else "none")
    level = np.array(level)
    return Said(level, np.where(level != "none", np.array(CATEGORIES)[np.argmax(category, axis=1)], ""))


def _rates(rows: Sequence[RiskRow], said: Said) -> dict[str, float | None]:
    risk = np.array([r.risk for r in rows])
    kind = np.array([r.kind for r in rows])
    category = np.array([r.category or "" for r in rows])

    def share(mask: np.ndarray, hit: np.ndarray) -> float | None:
        return float(hit[mask].mean()) if mask.any() else None

    raised = said.level != "none"
    out = {"caught": share(risk != "none", raised), "urgent": share(risk == "urgent", said.level == "urgent"),
           "false_alarm_lookalike": share((risk == "none") & (kind == "lookalike"), raised),
           "false_alarm_ordinary": share((risk == "none") & (kind == "ordinary"), raised),
           "urgent_false_alarm_ordinary": share((risk == "none") & (kind == "ordinary"), said.level == "urgent"),
           "category_right": share(raised & (risk != "none"), said.category == category)}
    for name in CATEGORIES:
        out[f"caught {name}"] = share(category == name, raised)
    return out


def risk_study(rows: Sequence[RiskRow], *, engine: Engine, ordinary: Sequence[RiskRow] = (), folds: int = 5,
               cache: Path | None = None, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The leave-one-source-out report: per method, per language, per source, and mean/worst over sources."""
    if not engine.backend.reads_hidden_states:
        raise UserError("The risk study fits the risk head, which needs hidden states; this backend gives none.")
    sources = sorted({r.source for r in rows})
    if len(sources) < 3:
        raise UserError("Leave-one-source-out needs at least three sources (a source column, or several files).")
    readout = risk_readout(engine)
    plain = engine.with_head(None)
    every = [*rows, *ordinary]
    tick = (lambda done: progress("reading", done, len(every))) if progress else None
    feats = features(every, engine=plain, readouts=(readout,), cache=cache, progress=tick)
    matrix = features_of(feats.hidden[:, 0], feats.log_odds)
    inner, outer = matrix[:len(rows)], matrix[len(rows):]
    source = np.array([r.source for r in rows])
    lists = {load_phrases(str(PREVIOUS_PHRASES)).version: load_phrases(str(PREVIOUS_PHRASES)),
             load_phrases(engine.settings.risk_phrases).version: load_phrases(engine.settings.risk_phrases)}
    floor_name = load_phrases(engine.settings.risk_phrases).version
    floors = {name: _phrases(every, phrases) for name, phrases in lists.items()}
    head = Said(np.empty(len(rows), dtype=object), np.empty(len(rows), dtype=object))
    for done, name in enumerate(sources, 1):
        test = source == name
        train = [r for r, t in zip(rows, test, strict=True) if not t]
        said = _head_said(inner[test], train, inner[~test], [r.lang for r in rows if r.source == name], folds)
        head.level[test], head.category[test] = said.level, said.category
        if progress:
            progress("leave-one-source-out", done, len(sources))
    methods = {name: Said(f.level[:len(rows)], f.category[:len(rows)]) for name, f in floors.items()}
    methods["head"] = head
    default = f"head + {floor_name}"
    methods[default] = _both(head, methods[floor_name])
    report: dict = {"model": engine.name, "fingerprint": engine.fingerprint,
                    "readout": f"{readout.kind} L{readout.layer}", "rows": len(rows),
                    "sources": {s: int((source == s).sum()) for s in sources}, "methods": {}}
    langs = sorted({r.lang for r in rows})
    for method, said in methods.items():
        per: dict = {}
        for lang in langs:
            mine = {s: _rates([r for r in rows if r.source == s and r.lang == lang],
                              Said(said.level[(source == s) & np.array([r.lang == lang for r in rows])],
                                   said.category[(source == s) & np.array([r.lang == lang for r in rows])]))
                    for s in sources if any(r.source == s and r.lang == lang for r in rows)}
            pooled_mask = np.array([r.lang == lang and r.source.startswith(STUDENTS) for r in rows])
            pooled = _rates([r for r, m in zip(rows, pooled_mask, strict=True) if m],
                            Said(said.level[pooled_mask], said.category[pooled_mask]))
            students = {s: v for s, v in mine.items() if s.startswith(STUDENTS)}
            per[lang] = {"by_source": mine, "pooled": pooled, "summary": _summary(students or mine)}
        report["methods"][method] = per
    if ordinary:
        all_said = _head_said(outer, list(rows), inner, [r.lang for r in ordinary], folds=0)
        outside = {name: Said(f.level[len(rows):], f.category[len(rows):]) for name, f in floors.items()}
        outside["head"] = all_said
        outside[default] = _both(all_said, outside[floor_name])
        report["ordinary"] = {method: {lang: {
            "n": int(sum(r.lang == lang for r in ordinary)),
            "false_alarm": float(np.mean([s != "none" for s, r in zip(said.level, ordinary, strict=True)
                                          if r.lang == lang])),
            "urgent_false_alarm": float(np.mean([s == "urgent" for s, r in zip(said.level, ordinary, strict=True)
                                                 if r.lang == lang]))}
            for lang in sorted({r.lang for r in ordinary})} for method, said in outside.items()}
    return report


def _summary(by_source: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float]]:
    """Mean and worst over sources of each rate (worst = lowest for recall, highest for false alarms)."""
    out = {}
    for key in next(iter(by_source.values())):
        values = [v[key] for v in by_source.values() if v[key] is not None]
        if values:
            worst = max(values) if key.startswith(("false", "urgent_false")) else min(values)
            out[key] = {"mean": float(np.mean(values)), "worst": float(worst)}
    return out


def format_risk_study(report: dict) -> str:
    lines = [f"model {report['model']} ({report['fingerprint']}), risk head reads {report['readout']}; "
             f"{report['rows']} rows from {len(report['sources'])} sources, leave-one-source-out. Rates: mean / "
             f"worst over the student-voice sources; categories pooled over them; ordinary: never fitted on", ""]
    keys = ["caught", "urgent", "false_alarm_lookalike", "false_alarm_ordinary"]
    head = f"{'method':22s} {'lang':4s} " + " ".join(f"{k.replace('false_alarm_', 'FA '):>16s}" for k in keys)
    head += "  " + " ".join(f"{c[:8]:>8s}" for c in CATEGORIES)
    if "ordinary" in report:
        head += f"  {'ordinary FA any/urgent':>22s}"
    lines.append(head)
    for method, per in report["methods"].items():
        for lang, found in per.items():
            cells = []
            for key in keys:
                s = found["summary"].get(key)
                cells.append(f"{s['mean']:.3f} / {s['worst']:.3f}" if s else "-")
            line = f"{method:22s} {lang:4s} " + " ".join(f"{c:>16s}" for c in cells)
            line += "  " + " ".join(f"{found['pooled'][f'caught {c}']:8.3f}" if found["pooled"][f"caught {c}"]
                                    is not None else f"{'-':>8s}" for c in CATEGORIES)
            if "ordinary" in report and lang in report["ordinary"][method]:
                o = report["ordinary"][method][lang]
                line += f"  {o['false_alarm']:10.3f} / {o['urgent_false_alarm']:.3f}"
            lines.append(line)
    lines.append("")
    lines.append("per source (default method): caught / urgent / FA look-alikes / FA ordinary")
    default = list(report["methods"])[-1]
    for lang, found in report["methods"][default].items():
        lines.append(f"  {lang}: " + "  ".join(
            f"{s} " + "/".join("-" if v[k] is None else f"{v[k]:.2f}" for k in
                               ("caught", "urgent", "false_alarm_lookalike", "false_alarm_ordinary"))
            for s, v in found["by_source"].items()))
    return "\n".join(lines)


def evaluate_risk(rows: Sequence[RiskRow], *, engine: Engine) -> dict:
    """How the engine as it is (its risk head, if fitted, and the phrase floor) reads these rows: per language and
    per kind, risk caught, urgent caught as urgent, per category, false alarms; each miss and false alarm listed."""
    from aio_core.assessment import assess

    found = assess([r.text for r in rows], engine=engine)
    said = Said(np.array([a.risk.level if a.risk else "none" for a in found]),
                np.array([(a.risk.category or "") if a.risk else "" for a in found]))
    report: dict = {"model": engine.name, "risk_reader": engine.risk_reader, "n": len(rows),
                    "all": _rates(rows, said), "by_lang": {}}
    for lang in sorted({r.lang for r in rows}):
        mask = np.array([r.lang == lang for r in rows])
        report["by_lang"][lang] = _rates([r for r, m in zip(rows, mask, strict=True) if m],
                                         Said(said.level[mask], said.category[mask]))
    kinds = {}
    for kind in sorted({r.kind for r in rows}):
        mask = np.array([r.kind == kind for r in rows])
        hit = said.level[mask] != "none"
        kinds[kind] = {"n": int(mask.sum()), "raised": float(hit.mean())}
    report["by_kind"] = kinds
    report["mistakes"] = [{"text": r.text, "lang": r.lang, "truth": f"{r.risk} {r.category or ''}".strip(),
                           "said": f"{level} {category}".strip(), "kind": r.kind}
                          for r, level, category in zip(rows, said.level, said.category, strict=True)
                          if (r.risk == "none") != (level == "none")]
    return report


def format_risk_eval(report: dict) -> str:
    lines = [f"model {report['model']}: {report['risk_reader']}; {report['n']} rows", "",
             "scope   risk caught  urgent->urgent  FA look-alikes  FA ordinary   " + "  ".join(
                 f"{c[:10]:>10s}" for c in CATEGORIES)]
    for name, r in [("all", report["all"]), *report["by_lang"].items()]:
        cells = [r["caught"], r["urgent"], r["false_alarm_lookalike"], r["false_alarm_ordinary"]]
        lines.append(f"{name:6s}  " + "  ".join("           -" if c is None else f"{c:12.3f}" for c in cells) + "  "
                     + "  ".join("         -" if r[f"caught {c}"] is None else f"{r[f'caught {c}']:10.3f}"
                                 for c in CATEGORIES))
    lines.append("by kind (share raised): " + ", ".join(f"{k} {v['raised']:.3f} (n={v['n']})"
                                                        for k, v in report["by_kind"].items()))
    lines += ["", "misses and false alarms:"] + [f"  [{m['lang']}] {m['truth']:>22s} -> {m['said']:22s} "
                                                 f"({m['kind']}) {m['text'][:90]}" for m in report["mistakes"]]
    return "\n".join(lines)
