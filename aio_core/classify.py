"""Sentiment labels from one forward pass: the model's next-token scores for the label words, never free text.

For each text the prompt is `prefix + text + suffix`. The prefix (system message, instructions, examples) is the same
for every text, so its keys and values are computed once per prompt and shared read-only by every batch
(`kvcache.SharedPrefixCache`). A batch holds texts of similar length, left-padded so that the last position is the
answer position of every row; only that position's logits are computed. The class score sums the probabilities of
the label's surface forms ("Positive", "positive", "正面"...), so the answer is always a valid label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from aio_core.engine import Engine
from aio_core.kvcache import SharedPrefixCache, compute_prefix
from aio_core.prompts import LABELS, SLOT, PromptVersion, fence, normalize_input
from aio_core.templating import clip, encode_content, encode_markup

EMOJI = {"positive": "😄", "negative": "😞"}
WORDS = {"zh": {"positive": "正面", "negative": "负面"}, "en": {"positive": "positive", "negative": "negative"}}


@dataclass(frozen=True)
class Sentiment:
    label: str  # positive | negative
    confidence: float  # probability of the chosen label, 0.5..1
    p_negative: float
    uncertain: bool  # confidence below the AIO_UNCERTAIN_BELOW setting: a person should look
    prompt_version: str
    lang: str  # the prompt language used: en | zh
    truncated: bool  # the text was longer than the token budget; the model read its head and tail

    @property
    def seed_line(self) -> str:
        """The seed article's display line, e.g. `😄 LLM 情感判断: 正面`."""
        return f"{EMOJI[self.label]} LLM 情感判断: {WORDS['zh'][self.label]}"

    def badge(self, lang: str = "en") -> str:
        """Short label for tables and chat: `😞 negative 0.93 (uncertain)`."""
        mark = {"en": " (uncertain)", "zh": "（不确定）"}[lang] if self.uncertain else ""
        return f"{EMOJI[self.label]} {WORDS[lang][self.label]} {self.confidence:.2f}{mark}"


@dataclass
class PreparedPrompt:
    prefix_ids: list[int]
    suffix_ids: list[int]
    label_ids: dict[str, torch.Tensor]
    prefix_kv: tuple | None = None
    bias: float = 0.0  # log-odds of "negative" on content-free inputs, subtracted when the prompt calibrates


def label_token_ids(tokenizer: object, words: dict[str, Sequence[str]]) -> dict[str, torch.Tensor]:
    """First token of each surface form, per label; a token that starts forms of both labels decides nothing."""
    firsts = {label: {encode_markup(tokenizer, w)[0] for w in forms if encode_markup(tokenizer, w)}
              for label, forms in words.items()}
    shared = set.intersection(*firsts.values())
    result = {label: sorted(ids - shared) for label, ids in firsts.items()}
    for label, ids in result.items():
        if not ids:
            raise ValueError(f"no label word for {label!r} has a first token of its own in this tokenizer")
    return {label: torch.tensor(ids) for label, ids in result.items()}


def _prepare(engine: Engine, prompt: PromptVersion, lang: str) -> PreparedPrompt:
    variant = prompt.variants[lang]
    messages = [{"role": "system", "content": variant.system}]
    for text, label in variant.examples:
        messages.append({"role": "user", "content": variant.user.replace(SLOT, fence(text))})
        messages.append({"role": "assistant", "content": variant.answer_prefix + label})
    messages.append({"role": "user", "content": variant.user})
    rendered = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                    **engine.loaded.profile.template_kwargs)
    before, after = rendered.split(SLOT)
    return PreparedPrompt(encode_markup(engine.tokenizer, before),
                          encode_markup(engine.tokenizer, after + variant.answer_prefix),
                          label_token_ids(engine.tokenizer, prompt.label_words))


def prepared_prompt(engine: Engine, lang: str) -> PreparedPrompt:
    """The engine's prompt for `lang`, prepared (prefix keys/values, calibration) on first use."""
    prompt = engine.prompt
    key = (prompt.version, lang)
    with engine.lock:
        if key not in engine.prepared:
            prepared = _prepare(engine, prompt, lang)
            prepared.prefix_kv = compute_prefix(engine.model, prepared.prefix_ids)
            if prompt.calibrate:
                bodies = [_body(engine, prepared, t)[0] for t in prompt.content_free]
                logits = _forward(engine, prepared, bodies, use_prefix_cache=True)
                prepared.bias = float(_log_odds_negative(logits, prepared.label_ids).mean())
            engine.prepared[key] = prepared
    return engine.prepared[key]


def _body(engine: Engine, prepared: PreparedPrompt, text: str) -> tuple[list[int], bool]:
    ids = encode_content(engine.tokenizer, fence(engine.prompt.sanitize(normalize_input(text))))
    budget = engine.settings.max_input_tokens
    return clip(ids, budget) + prepared.suffix_ids, len(ids) > budget


@torch.inference_mode()
def _forward(engine: Engine, prepared: PreparedPrompt, bodies: list[list[int]], *,
             use_prefix_cache: bool) -> torch.Tensor:
    """Last-position logits (float32) for each body, left-padded into one batch."""
    rows = bodies if use_prefix_cache else [prepared.prefix_ids + b for b in bodies]
    width = max(len(r) for r in rows)
    pad = engine.tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    offset = len(prepared.prefix_ids) if use_prefix_cache else 0
    # Each row's real tokens get consecutive positions right after the prefix, whatever padding precedes them.
    positions = offset + (mask.cumsum(dim=1) - 1).clamp(min=0)
    kwargs: dict[str, object] = {"logits_to_keep": 1, "position_ids": positions.to(engine.device)}
    if bool(mask.all()):
        kwargs["attention_mask"] = None  # no padding: the plain causal path is faster
    else:
        full = torch.cat([torch.ones((len(rows), offset), dtype=torch.long), mask], dim=1) if offset else mask
        kwargs["attention_mask"] = full.to(engine.device)
    if use_prefix_cache:
        kwargs.update(cache=SharedPrefixCache(prepared.prefix_kv, len(rows)), use_cache=True)
    else:
        kwargs["use_cache"] = False
    with engine.lock:
        logits = engine.model(input_ids=ids.to(engine.device), **kwargs).logits
        return logits[:, -1, :].float().cpu()


def _log_odds_negative(logits: torch.Tensor, label_ids: dict[str, torch.Tensor]) -> torch.Tensor:
    """log P(negative words) - log P(positive words), each class summing its surface forms' probabilities."""
    logp = torch.log_softmax(logits, dim=-1)
    score = {label: torch.logsumexp(logp[:, ids], dim=-1) for label, ids in label_ids.items()}
    return score["negative"] - score["positive"]


def classify(texts: Sequence[str], *, engine: Engine, batch_size: int | None = None,
             use_prefix_cache: bool = True, progress: Callable[[int], None] | None = None) -> list[Sentiment]:
    """One Sentiment per text, in order. `progress` is called with the number of texts finished so far."""
    prompt = engine.prompt
    batch_size = batch_size or engine.settings.batch_size
    threshold = engine.settings.uncertain_below
    results: list[Sentiment | None] = [None] * len(texts)
    by_lang: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        by_lang.setdefault(prompt.variant_for(text)[0], []).append(i)
    done = 0
    for lang, indices in by_lang.items():
        prepared = prepared_prompt(engine, lang)
        bodies = {i: _body(engine, prepared, texts[i]) for i in indices}
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(indices, key=lambda i: len(bodies[i][0]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            logits = _forward(engine, prepared, [bodies[i][0] for i in chunk], use_prefix_cache=use_prefix_cache)
            with engine.lock:  # all model arithmetic under the lock, see reply.generate_tokens
                p_negatives = torch.sigmoid(_log_odds_negative(logits, prepared.label_ids) - prepared.bias).tolist()
            for i, p_negative in zip(chunk, p_negatives, strict=True):
                label = LABELS[1] if p_negative >= 0.5 else LABELS[0]
                confidence = max(p_negative, 1.0 - p_negative)
                results[i] = Sentiment(label, confidence, p_negative, confidence < threshold, prompt.version, lang,
                                       bodies[i][1])
            done += len(chunk)
            if progress:
                progress(done)
    return results  # type: ignore[return-value]
