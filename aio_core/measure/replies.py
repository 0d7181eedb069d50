"""Reply quality, measured: `python -m aio_core eval-replies FILE`.

FILE is JSON Lines, one conversation a line: `{"lang": "zh"|"en", "messages": [{"role", "content"}, ...]}` ending
with a user turn. For each, the assistant's next turn is generated the way the Chat page generates it (the user's
message labelled first, its tone in the system prompt, fixed seed), and checked automatically:

- language: the reply is in the user's language;
- no_echo: no long span of the user's last message is copied (6 words in English, 8 Han characters in Chinese);
- no_repeat: no long span of an earlier assistant turn is said again (same lengths);
- no_adoption: the assistant does not take the user's negative feeling as its own ("I am so angry", 我很难过);
- no_leak: no span of the system prompt's wording (4 words / 6 characters) and no talk of "system prompt";
- length: between 3 and 120 words (English) or 5 and 220 characters (Chinese);
- ends_cleanly: the reply ended by itself (not at the token limit) and ends like a sentence.

The score of a run is each check's pass rate and the share of replies that pass all of them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aio_core.classify import classify
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.prompts import detect_lang
from aio_core.reply import ReplyOptions, build_messages, generate_tokens

CHECKS = ("language", "no_echo", "no_repeat", "no_adoption", "no_leak", "length", "ends_cleanly")
SEED = 1234
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_WORD = re.compile(r"[a-z0-9']+")
_FEELINGS_EN = (r"angry|sad|upset|lonely|alone|depressed|frustrated|furious|miserable|hopeless|exhausted|scared|"
                r"anxious|stressed|terrible|awful|worthless|hurt|heartbroken|mad|annoyed|tired of")
_ADOPT_EN = re.compile(rf"\b(i\s*'?\s*a?m|i\s+feel|i\s+felt|i\s+have\s+been|i'?ve\s+been|i\s+was)\s+"
                       rf"(so\s+|very\s+|really\s+|also\s+|too\s+|just\s+)*({_FEELINGS_EN})\b", re.IGNORECASE)
_ADOPT_ZH = re.compile(r"我(也|真的|真是|现在|今天)?(很|好|太|非常|特别|超|有点)?"
                       r"(生气|难过|伤心|孤独|寂寞|沮丧|愤怒|绝望|烦|累|害怕|焦虑|失望|崩溃|受够)")
_ENDS = tuple(".!?。！？…~～)）\"”'’") + ("😊", "🙂", "❤️", "💪", "🌟", "🤗")


@dataclass(frozen=True)
class Conversation:
    lang: str
    messages: list[dict[str, str]]
    line: int
    raw: dict


def read_conversations(path: Path | str) -> list[Conversation]:
    found = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} cannot be read as UTF-8 JSON Lines ({exc}).") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            messages = [{"role": m["role"], "content": str(m["content"])} for m in raw["messages"]]
            lang = raw["lang"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}, line {number}: each line must be a JSON object with \"lang\" and "
                            f"\"messages\" (a list of {{\"role\", \"content\"}}).") from None
        if lang not in ("en", "zh") or not messages or messages[-1]["role"] != "user" or any(
                m["role"] not in ("user", "assistant") for m in messages):
            raise UserError(f"{path}, line {number}: lang must be en or zh and the messages (user/assistant) must "
                            "end with a user turn.")
        found.append(Conversation(lang, messages, number, raw))
    if not found:
        raise UserError(f"{path} holds no conversations.")
    return found


def _units(text: str, lang: str) -> list[str]:
    """Words (English) or Han characters (Chinese), normalised, for span comparisons."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _HAN.findall(text) if lang == "zh" else _WORD.findall(text)


def _shares_span(a: str, b: str, lang: str, size: int | None = None) -> bool:
    size = size or (8 if lang == "zh" else 6)
    units_a, units_b = _units(a, lang), _units(b, lang)
    spans = {tuple(units_b[i:i + size]) for i in range(len(units_b) - size + 1)}
    return any(tuple(units_a[i:i + size]) in spans for i in range(len(units_a) - size + 1))


def check_reply(reply: str, conversation: Conversation, system: str, *, hit_limit: bool) -> dict[str, bool]:
    lang = conversation.lang
    last_user = conversation.messages[-1]["content"]
    earlier = [m["content"] for m in conversation.messages if m["role"] == "assistant"]
    stripped = reply.strip()
    size = len(_HAN.findall(stripped)) if lang == "zh" else len(stripped.split())
    return {
        "language": bool(stripped) and detect_lang(stripped) == lang,
        "no_echo": not _shares_span(stripped, last_user, lang),
        "no_repeat": not any(_shares_span(stripped, turn, lang) for turn in earlier),
        "no_adoption": not (_ADOPT_ZH.search(stripped) if lang == "zh" else _ADOPT_EN.search(stripped)),
        "no_leak": not _shares_span(stripped, system, lang, 6 if lang == "zh" else 4)
        and "system prompt" not in stripped.lower() and "系统提示" not in stripped,
        "length": (5 <= size <= 220) if lang == "zh" else (3 <= size <= 120),
        "ends_cleanly": not hit_limit and stripped.endswith(_ENDS),
    }


def evaluate_replies(conversations: Sequence[Conversation], *, engine: Engine, options: ReplyOptions | None = None,
                     progress: Callable[[int], None] | None = None) -> tuple[dict, list[dict]]:
    """(the summary `--json` prints, one result per conversation with its reply and checks)."""
    options = options or ReplyOptions(seed=SEED)
    limit = options.max_new_tokens or engine.profile.generation.max_new_tokens
    results = []
    for done, conversation in enumerate(conversations, 1):
        sentiment = classify([conversation.messages[-1]["content"]], engine=engine)[0]
        messages = build_messages(engine, conversation.messages, sentiment)
        ids = list(generate_tokens(engine, messages, options))
        text = engine.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        checks = check_reply(text, conversation, messages[0]["content"], hit_limit=len(ids) >= limit)
        results.append({**conversation.raw, "reply": text, "checks": checks, "label": sentiment.label})
        if progress:
            progress(done)
    n = len(results)
    rates = {c: sum(r["checks"][c] for r in results) / n for c in CHECKS}
    by_lang = {lang: {c: sum(r["checks"][c] for r in mine) / len(mine) for c in CHECKS}
               for lang in ("en", "zh") if (mine := [r for r in results if r["lang"] == lang])}
    summary = {"n": n, "checks": rates, "all_pass": sum(all(r["checks"].values()) for r in results) / n,
               "model": engine.name, "by_lang": by_lang}
    return summary, results


def format_replies(summary: dict, results: Sequence[dict], worst: int = 8) -> str:
    lines = [f"model {summary['model']}: {summary['n']} conversations, all checks pass on "
             f"{summary['all_pass']:.1%}", "", "check          all     en      zh"]
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
        lines.append(f"  reply: {r['reply'][:160]!r}")
    return "\n".join(lines)
