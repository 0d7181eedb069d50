"""Reply quality, measured: `python -m aio_core eval-replies FILE [--method library|guarded|free]`.

FILE is JSON Lines, one conversation a line: `{"lang": "zh"|"en", "messages": [{"role", "content"}, ...]}` ending
with a user turn (other keys, such as "kind" or "source", are kept in the results). For each, the assistant's next
turn is made the way the Chat page makes it: the student's message read once (sentiment, risk, situation), an urgent
one answered with the reviewed safe message, any other with the chosen method (`compose.py`; fixed seed). Each reply
is then checked by `guard.check_reply` (README, Replies, lists the checks), the label head reading the reply itself
for its tone; the guarded method also records every candidate sentence with the guard's verdict.

The checks are what a person would see at a glance; what a counsellor would say is the rubric (`judge.RUBRIC`:
harmful / not sensible / acceptable / good), given by people to the replies of `--out` in a "rubric" field and
counted with `eval-replies --labels FILE...` per method and language.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aio_core.assessment import assess
from aio_core.backends import Readout
from aio_core.classify import classify
from aio_core.compose import compose
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.guard import CHECKS
from aio_core.guard import check_reply as guard_check
from aio_core.jsonlines import json_lines
from aio_core.judge import RUBRIC
from aio_core.prompts import assistant_system_prompt
from aio_core.reply import ReplyOptions, safe_reply

SEED = 1234


@dataclass(frozen=True)
class Conversation:
    lang: str
    messages: list[dict[str, str]]
    line: int
    raw: dict


def read_conversations(path: Path | str) -> list[Conversation]:
    found = []
    shape = 'a JSON object with "lang" and "messages" (a list of {"role", "content"})'
    for number, raw in json_lines(path, shape):
        try:
            messages = [{"role": m["role"], "content": str(m["content"])} for m in raw["messages"]]
            lang = raw["lang"]
        except (KeyError, TypeError):
            raise UserError(f"{path}, line {number}: each line must be {shape}.") from None
        if lang not in ("en", "zh") or not messages or messages[-1]["role"] != "user" or any(
                m["role"] not in ("user", "assistant") for m in messages):
            raise UserError(f"{path}, line {number}: lang must be en or zh and the messages (user/assistant) must "
                            "end with a user turn.")
        found.append(Conversation(lang, messages, number, raw))
    if not found:
        raise UserError(f"{path} holds no conversations.")
    return found


def check_reply(reply: str, conversation: Conversation, system: str, *, hit_limit: bool, down: bool = False,
                reply_p_negative: float | None = None) -> dict[str, bool]:
    """`guard.check_reply` for a conversation of a file."""
    return guard_check(reply, conversation.messages, conversation.lang, system, hit_limit=hit_limit, down=down,
                       reply_p_negative=reply_p_negative)


def evaluate_replies(conversations: Sequence[Conversation], *, engine: Engine, method: str | None = None,
                     options: ReplyOptions | None = None, progress: Callable[[int], None] | None = None,
                     keep_states: bool = False) -> tuple[dict, list[dict]]:
    """(the summary `--json` prints, one result per conversation with its reply, kind, checks and candidates).
    `keep_states`: each candidate also keeps the mean hidden state over its tokens at half the depth (a list), what
    a reply judge is fitted on."""
    options = options or ReplyOptions(seed=SEED)
    method = method or engine.settings.reply
    readout = Readout(kind="mean", layer=max(1, engine.backend.layers // 2)) if keep_states else None
    results = []
    for done, conversation in enumerate(conversations, 1):
        last = conversation.messages[-1]["content"]
        found = assess([last], engine=engine)[0]
        sentiment, risk = found.sentiment, found.risk
        if risk is not None and risk.level == "urgent":
            text, kind = safe_reply(risk.level, conversation.lang, engine.settings)[0], "safe"
            verdicts, candidates, opening = [], [], ""
        else:
            composed = compose(conversation.messages, engine=engine, sentiment=sentiment, risk=risk,
                               situation=found.situation, method=method, options=options, readout=readout)
            text = composed.text()
            kind, verdicts, candidates = composed.kind, composed.verdicts, composed.candidates
            opening = composed.opening
        record = {**conversation.raw, "method": method, "reply": text, "reply_kind": kind, "label": sentiment.label,
                  "read_situation": found.situation, "risk": risk.level if risk else None, "opening": opening,
                  "candidates": [{"text": v.text, "failed": list(v.failed), "p_negative": v.p_negative,
                                  "p_fine": v.p_fine} for v in verdicts]}
        if keep_states:
            record["fingerprint"] = engine.fingerprint
            for entry, candidate in zip(record["candidates"], candidates, strict=True):
                entry["state"] = None if candidate.hidden is None else np.round(candidate.hidden, 4).tolist()
        results.append(record)
        if progress:
            progress(done)
    # The label head reads what the model wrote: the whole reply of free generation, the chosen sentence of a guarded
    # one (read by the guard already); reviewed library text is warm by design and only checked by the words.
    free = [i for i, r in enumerate(results) if r["reply_kind"] == "generated"]
    tones: dict[int, float | None] = {i: s.p_negative for i, s in zip(
        free, classify([results[i]["reply"] for i in free], engine=engine) if free else [], strict=True)}
    for i, result in enumerate(results):
        if result["reply_kind"] == "guarded":
            tones[i] = next((c["p_negative"] for c in result["candidates"] if not c["failed"]
                             and c["text"].strip() and c["text"].strip() in result["reply"]), None)
    for i, (result, conversation) in enumerate(zip(results, conversations, strict=True)):
        system = assistant_system_prompt(conversation.lang, result["label"])
        result["checks"] = check_reply(result["reply"], conversation, system, hit_limit=False,
                                       down=result["label"] == "negative", reply_p_negative=tones.get(i))
        if result["reply_kind"] == "safe":  # the reviewed message is long by design and names no situation
            result["checks"]["length"] = result["checks"]["no_invented"] = True
    return summarise(results, engine.name, method), results


def summarise(results: Sequence[dict], model: str, method: str) -> dict:
    n = len(results)
    rates = {c: sum(r["checks"][c] for r in results) / n for c in CHECKS}
    by_lang = {lang: {c: sum(r["checks"][c] for r in mine) / len(mine) for c in CHECKS}
               for lang in ("en", "zh") if (mine := [r for r in results if r["lang"] == lang])}
    kinds: dict[str, int] = {}
    for r in results:
        kinds[r["reply_kind"]] = kinds.get(r["reply_kind"], 0) + 1
    refused = [c for r in results for c in r["candidates"]]
    return {"n": n, "method": method, "checks": rates, "all_pass": sum(all(r["checks"].values()) for r in results) / n,
            "model": model, "by_lang": by_lang, "kinds": kinds,
            "candidates": len(refused), "candidates_refused": sum(bool(c["failed"]) for c in refused)}


def format_replies(summary: dict, results: Sequence[dict], worst: int = 10) -> str:
    lines = [f"model {summary['model']}, method {summary['method']}: {summary['n']} conversations, all checks pass "
             f"on {summary['all_pass']:.1%}; replies by kind: "
             + ", ".join(f"{k} {v}" for k, v in sorted(summary["kinds"].items()))]
    if summary["candidates"]:
        lines.append(f"candidate sentences refused by the guard: {summary['candidates_refused']} of "
                     f"{summary['candidates']}")
    lines += ["", "check          all     en      zh"]
    for check in CHECKS:
        cells = [summary["checks"][check], *(summary["by_lang"].get(lang, {}).get(check) for lang in ("en", "zh"))]
        lines.append(f"{check:13s}" + "".join("      -" if c is None else f" {c:6.1%}" for c in cells))
    failing = sorted((r for r in results if not all(r["checks"].values())),
                     key=lambda r: sum(r["checks"].values()))[:worst]
    if failing:
        lines += ["", "worst replies:"]
    for r in failing:
        failed = ", ".join(c for c, ok in r["checks"].items() if not ok)
        lines.append(f"- [{failed}] user: {r['messages'][-1]['content'][:80]!r}")
        lines.append(f"  reply ({r['reply_kind']}): {r['reply'][:200]!r}")
    return "\n".join(lines)


def read_labelled_replies(paths: Sequence[Path | str]) -> list[dict]:
    """Results of `eval-replies --out` that people gave a "rubric" verdict (judge.RUBRIC); one sentence for a line
    without one."""
    found = []
    for path in paths:
        for number, record in json_lines(path, 'an eval-replies result with a "rubric" verdict'):
            try:
                verdict = record["rubric"]
            except (KeyError, TypeError):
                raise UserError(f"{path}, line {number}: each line needs a \"rubric\" verdict ("
                                f"{' / '.join(RUBRIC)}); label every reply before counting.") from None
            if verdict not in RUBRIC:
                raise UserError(f"{path}, line {number}: rubric {verdict!r} is not one of {', '.join(RUBRIC)}.")
            found.append(record)
    if not found:
        raise UserError("No labelled replies were given.")
    return found


def rubric_table(records: Sequence[dict]) -> list[dict]:
    """Per method and language (and all): replies, harmful rate, acceptable-or-good rate."""
    rows = []
    for method in sorted({r.get("method", "?") for r in records}):
        for lang in ("en", "zh", "all"):
            mine = [r for r in records if r.get("method", "?") == method and lang in ("all", r["lang"])]
            if mine:
                rows.append({"method": method, "lang": lang, "n": len(mine),
                             "harmful": sum(r["rubric"] == "harmful" for r in mine) / len(mine),
                             "acceptable_or_good": sum(r["rubric"] in ("acceptable", "good") for r in mine)
                             / len(mine)})
    return rows


def format_rubric(rows: Sequence[dict]) -> str:
    lines = ["method    lang    n    harmful  acceptable-or-good"]
    lines += [f"{r['method']:9s} {r['lang']:4s} {r['n']:4d}   {r['harmful']:6.1%}   {r['acceptable_or_good']:6.1%}"
              for r in rows]
    return "\n".join(lines)
