"""The warm assistant: a streamed reply to a chat history, its tone set by the user's detected sentiment.

This module builds the messages and reads the tokens back as text; the backend samples them (in process it takes
the model lock per token, so several sessions interleave instead of queueing behind one long answer). Text is
yielded as soon as it is complete UTF-8.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from aio_core.classify import Sentiment
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.prompts import assistant_system_prompt, detect_lang
from aio_core.settings import Settings
from aio_core.templating import Message, Tokenizer, clip, encode_chat, encode_content
from db.labels import RISKY

_MARKUP_TOKENS = 8  # per turn: <|im_start|>role\n ... <|im_end|>\n


def trim_history(tokenizer: Tokenizer, history: Sequence[Message], budget: int) -> list[Message]:
    """The most recent turns that fit in `budget` tokens; the last message always stays (clipped if it must)."""
    if not history:
        raise ValueError("the chat history is empty; it needs at least the user's message")
    last = dict(history[-1])
    ids = encode_content(tokenizer, last["content"])
    if len(ids) > budget // 2:
        last["content"] = tokenizer.decode(clip(ids, budget // 2), skip_special_tokens=False)
    kept = [last]
    used = min(len(ids), budget // 2) + _MARKUP_TOKENS
    for message in reversed(history[:-1]):
        cost = len(encode_content(tokenizer, message["content"])) + _MARKUP_TOKENS
        if used + cost > budget:
            break
        kept.append(dict(message))
        used += cost
    kept.reverse()
    while kept and kept[0]["role"] == "assistant":  # a history starts with the user's turn
        kept.pop(0)
    return kept or [last]


def build_messages(engine: Engine, history: Sequence[Message], sentiment: Sentiment | None) -> list[Message]:
    turns = [m for m in history if m["role"] in ("user", "assistant")]
    last_user = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
    system = assistant_system_prompt(detect_lang(last_user), sentiment.label if sentiment else None,
                                     bool(sentiment and sentiment.uncertain))
    return [{"role": "system", "content": system}, *trim_history(engine.tokenizer, turns,
                                                                 engine.settings.history_tokens)]


# No 4-token span of the conversation so far (the user's words, earlier replies, the instructions) is said again:
# transformers' NoRepeatNGramLogitsProcessor over the whole prompt, which stopped echo, repeats and quoting.
NO_REPEAT_NGRAM = 4
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_SCRIPT_BANS: dict[tuple[int, str], tuple[int, ...]] = {}


def other_script_ids(tokenizer: Tokenizer, lang: str) -> tuple[int, ...]:
    """Tokens of the other language's script, never sampled in a reply in `lang`: Han characters in an English
    reply, Latin words in a Chinese one (special tokens, digits and punctuation stay). The eval model otherwise
    answered some Chinese messages in English."""
    key = (id(tokenizer), lang)
    if key not in _SCRIPT_BANS:
        special = set(tokenizer.all_special_ids)
        pattern = _HAN if lang == "en" else _LATIN_WORD
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        _SCRIPT_BANS[key] = tuple(i for i, text in enumerate(texts) if i not in special and pattern.search(text))
    return _SCRIPT_BANS[key]


@dataclass(frozen=True)
class ReplyOptions:
    """Overrides of the model profile's generation defaults; None keeps the default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    max_new_tokens: int | None = None
    seed: int | None = None  # fixed seed: the same history gives the same reply
    same_script: bool = True  # the reply stays in the script of the user's language (see other_script_ids)


DEFAULT_OPTIONS = ReplyOptions()  # frozen, so one shared default is safe


def generate_tokens(engine: Engine, messages: Sequence[Message], options: ReplyOptions = DEFAULT_OPTIONS, *,
                    stop_at_end: bool = True) -> Iterator[int]:
    """Token ids of the assistant's next turn, one at a time, until an end token (unless `stop_at_end` is False,
    as when the benchmark times a fixed length) or the token limit."""
    chosen = {k: v for k, v in vars(options).items() if v is not None and k != "same_script"}
    sampling = replace(engine.profile.generation, **chosen)
    if options.no_repeat_ngram_size is None and not sampling.no_repeat_ngram_size:
        sampling = replace(sampling, no_repeat_ngram_size=NO_REPEAT_NGRAM)
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if options.same_script and last_user:
        sampling = replace(sampling, suppress_ids=other_script_ids(engine.tokenizer, detect_lang(last_user)))
    prompt = encode_chat(engine.tokenizer, messages, template_kwargs=engine.profile.template_kwargs)
    return engine.backend.generate(prompt, sampling, stop_at_end=stop_at_end)


def stream_text(tokenizer: Tokenizer, tokens: Iterator[int]) -> Iterator[str]:
    """Decoded text as it becomes final: a character split across tokens is held until it is complete."""
    ids: list[int] = []
    sent = ""
    for token in tokens:
        ids.append(token)
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence; the next token may finish it
            continue
        if text.startswith(sent) and len(text) > len(sent):
            yield text[len(sent):]
            sent = text
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if text.startswith(sent) and len(text) > len(sent):
        yield text[len(sent):]


def reply(history: Sequence[Message], *, engine: Engine, sentiment: Sentiment | None = None,
          options: ReplyOptions = DEFAULT_OPTIONS) -> Iterator[str]:
    """The assistant's reply to `history` (ending with the user's message), streamed as text pieces."""
    messages = build_messages(engine, history, sentiment)
    return stream_text(engine.tokenizer, generate_tokens(engine, messages, options))


def reply_text(history: Sequence[Message], *, engine: Engine, sentiment: Sentiment | None = None,
               options: ReplyOptions = DEFAULT_OPTIONS) -> str:
    """The whole reply at once (decoded in one go, not joined from the stream)."""
    messages = build_messages(engine, history, sentiment)
    ids = list(generate_tokens(engine, messages, options))
    return engine.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


SAFE_MESSAGES = Path(__file__).resolve().parent / "data" / "safe_messages.json"


@lru_cache(maxsize=4)
def _safe_messages(path: str) -> dict:
    where = Path(path) if path else SAFE_MESSAGES
    try:
        found = json.loads(where.read_text(encoding="utf-8"))
        for level in RISKY:
            for lang in ("en", "zh"):
                found["messages"][level][lang].format(helpline="")
                found["helpline"][lang].format()
        return found
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise UserError(f"AIO_SAFE_MESSAGES={where} is not a usable safe-message file ({exc}); start from a copy of "
                        f"{SAFE_MESSAGES.name}.") from None


def safe_reply(level: str, lang: str, settings: Settings) -> tuple[str, str]:
    """The reviewed reply to a concern/urgent message in the user's language, and the file's version."""
    found = _safe_messages(settings.safe_messages)
    lang = lang if lang in ("en", "zh") else "en"
    helpline = settings.helpline or found["helpline"][lang]
    return found["messages"][level][lang].format(helpline=helpline).strip(), str(found.get("version", ""))
