"""Sentiment labels from one forward pass: the model's next-token scores for the label words, never free text.

For each text the prompt is `prefix + text + suffix`. The prefix (system message, instructions, examples) is the same
for every text, so the backend prepares it once per prompt and shares it read-only with every batch. A batch holds
texts of similar length; the backend reads the answer position of each row only. The class score sums the
probabilities of the label's surface forms ("Positive", "positive", "正面"...), so the answer is always a valid label.
This module builds the prompts and reads the results; the model itself is behind `engine.backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aio_core.backends import Prefix, Readout
from aio_core.engine import Engine
from aio_core.prompts import LABELS, SLOT, PromptVersion, fence, normalize_input
from aio_core.templating import Tokenizer, clip, encode_content, encode_markup

EMOJI = {"positive": "😄", "negative": "😞"}
WORDS = {"zh": {"positive": "正面", "negative": "负面"}, "en": {"positive": "positive", "negative": "negative"}}
UNCERTAIN_MARK = {"en": " (uncertain)", "zh": "（不确定）"}


def badge(label: str, confidence: float, uncertain: bool, lang: str = "en") -> str:
    """Short label for tables and chat: `😞 negative 0.93 (uncertain)`."""
    mark = UNCERTAIN_MARK[lang] if uncertain else ""
    return f"{EMOJI[label]} {WORDS[lang][label]} {confidence:.2f}{mark}"


# The seed article's line is Chinese, and stays exactly so in Chinese; a reader of English gets the same line in theirs.
SEED_LINE = {"zh": "{emoji} LLM 情感判断: {word}", "en": "{emoji} LLM sentiment: {word}"}


def seed_line(label: str, lang: str = "zh") -> str:
    """The seed article's display line, e.g. `😄 LLM 情感判断: 正面` (`😄 LLM sentiment: positive` in English)."""
    return SEED_LINE[lang].format(emoji=EMOJI[label], word=WORDS[lang][label])


@dataclass(frozen=True)
class Sentiment:
    label: str  # positive | negative
    confidence: float  # probability of the chosen label, 0.5..1
    p_negative: float
    uncertain: bool  # confidence below the AIO_UNCERTAIN_BELOW setting: a person should look
    prompt_version: str
    lang: str  # the prompt language used: en | zh
    truncated: bool  # the text was longer than the token budget; the model read its head and tail
    head_id: str | None = None  # the learned head that decided, None = the zero-shot readout

    @property
    def seed_line(self) -> str:
        return seed_line(self.label)

    def badge(self, lang: str = "en") -> str:
        return badge(self.label, self.confidence, self.uncertain, lang)


@dataclass
class PreparedPrompt:
    prefix: Prefix
    suffix_ids: list[int]
    label_ids: dict[str, list[int]]
    bias: float = 0.0  # log-odds of "negative" on content-free inputs, subtracted when the prompt calibrates

    @property
    def scored_ids(self) -> list[int]:
        """Every label token, in the order `score` returns their log-probabilities (the prompt's label order)."""
        return [i for ids in self.label_ids.values() for i in ids]


def label_token_ids(tokenizer: Tokenizer, words: dict[str, Sequence[str]]) -> dict[str, list[int]]:
    """First token of each surface form, per label; a token that starts forms of two labels decides nothing."""
    firsts = {label: {encode_markup(tokenizer, w)[0] for w in forms if encode_markup(tokenizer, w)}
              for label, forms in words.items()}
    seen = [i for ids in firsts.values() for i in ids]
    shared = {i for i in seen if seen.count(i) > 1}
    result = {label: sorted(ids - shared) for label, ids in firsts.items()}
    for label, ids in result.items():
        if not ids:
            raise ValueError(f"no label word for {label!r} has a first token of its own in this tokenizer")
    return result


def _prepare(engine: Engine, prompt: PromptVersion, lang: str) -> PreparedPrompt:
    variant = prompt.variants[lang]
    messages = [{"role": "system", "content": variant.system}]
    for text, label in variant.examples:
        messages.append({"role": "user", "content": variant.user.replace(SLOT, fence(text))})
        messages.append({"role": "assistant", "content": variant.answer_prefix + label})
    messages.append({"role": "user", "content": variant.user})
    rendered = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                    **engine.profile.template_kwargs)
    before, after = rendered.split(SLOT)
    return PreparedPrompt(prefix=engine.backend.prefix(encode_markup(engine.tokenizer, before)),
                          suffix_ids=encode_markup(engine.tokenizer, after + variant.answer_prefix),
                          label_ids=label_token_ids(engine.tokenizer, prompt.label_words))


def prepared_prompt(engine: Engine, lang: str, prompt: PromptVersion | None = None) -> PreparedPrompt:
    """The engine's prompt (or `prompt`) for `lang`, prepared (prefix keys/values, calibration) on first use."""
    prompt = prompt or engine.prompt
    key = (prompt.version, lang)
    with engine.preparing:
        if key not in engine.prepared:
            prepared = _prepare(engine, prompt, lang)
            if prompt.calibrate:
                bodies = [_body(engine, prompt, prepared, t)[0] for t in prompt.content_free]
                scores = engine.backend.score(prepared.prefix, bodies, prepared.scored_ids)
                prepared.bias = float(log_odds_negative(scores.logprobs, prepared.label_ids, scores.floor).mean())
            engine.prepared[key] = prepared
    return engine.prepared[key]


def _body(engine: Engine, prompt: PromptVersion, prepared: PreparedPrompt, text: str) -> tuple[list[int], bool]:
    ids = encode_content(engine.tokenizer, fence(prompt.sanitize(normalize_input(text))))
    budget = engine.settings.max_input_tokens
    return clip(ids, budget) + prepared.suffix_ids, len(ids) > budget


def class_scores(logprobs: np.ndarray, label_ids: dict[str, list[int]], floor: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """log P(class) per class, each class summing its surface forms' probabilities. `logprobs` holds the columns
    of `PreparedPrompt.scored_ids`, in that order. `floor` (a server's top-K, see `Scores.floor`): a class none of
    whose forms is in a row's top K gets that bound instead of -inf."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    scores, start = {}, 0
    for label, ids in label_ids.items():
        scores[label] = np.logaddexp.reduce(logprobs[:, start:start + len(ids)], axis=1)
        if floor is not None:
            scores[label] = np.where(np.isneginf(scores[label]), np.asarray(floor, dtype=np.float64),
                                     scores[label])
        start += len(ids)
    return scores


def log_odds_negative(logprobs: np.ndarray, label_ids: dict[str, list[int]], floor: np.ndarray | None = None
                      ) -> np.ndarray:
    """log P(any label but the first) - log P(the first): for sentiment, negative vs positive; for risk, any risk
    vs safe."""
    scores = list(class_scores(logprobs, label_ids, floor).values())
    return np.logaddexp.reduce(np.stack(scores[1:]), axis=0) - scores[0]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for log-odds in the hundreds."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class Reading:
    """What the model said about each text, before any decision: the zero-shot log-odds of "negative" (calibrated
    when the prompt calibrates) and, when asked for, hidden states. Every head (label, risk) reads from one Reading,
    so one forward pass serves them all."""

    log_odds: np.ndarray  # [texts] of any label but the first (sentiment: negative), calibrated if the prompt is
    classes: dict[str, np.ndarray]  # log P(class) per label, [texts] each
    hidden: np.ndarray | None  # [texts, readouts asked for, hidden size]
    langs: list[str]
    truncated: list[bool]
    readouts: tuple[Readout, ...] = ()

    def state(self, readout: Readout) -> np.ndarray:
        """The hidden state read at `readout`, [texts, hidden size]."""
        if self.hidden is None or readout not in self.readouts:
            raise ValueError(f"this reading holds no hidden state at {readout}")
        return self.hidden[:, self.readouts.index(readout)]


def read(texts: Sequence[str], *, engine: Engine, readouts: Sequence[Readout] = (), batch_size: int | None = None,
         use_prefix_cache: bool = True, progress: Callable[[int], None] | None = None,
         prompt: PromptVersion | None = None) -> Reading:
    """One forward pass per batch: texts of one prompt language together, similar lengths in one batch. `readouts`:
    the hidden states to read (the same for every text). `prompt`: another prompt than the engine's."""
    prompt = prompt or engine.prompt
    readouts = tuple(dict.fromkeys(readouts))
    batch_size = batch_size or engine.settings.batch_size
    log_odds = np.zeros(len(texts))
    classes = {label: np.zeros(len(texts)) for label in prompt.label_words}
    hidden: np.ndarray | None = None
    langs = [""] * len(texts)
    truncated = [False] * len(texts)
    by_lang: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        by_lang.setdefault(prompt.variant_for(text)[0], []).append(i)
    done = 0
    for lang, indices in by_lang.items():
        prepared = prepared_prompt(engine, lang, prompt)
        bodies = {i: _body(engine, prompt, prepared, texts[i]) for i in indices}
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(indices, key=lambda i: len(bodies[i][0]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            scores = engine.backend.score(prepared.prefix, [bodies[i][0] for i in chunk], prepared.scored_ids,
                                          readouts=readouts, text_tail=len(prepared.suffix_ids),
                                          use_prefix_cache=use_prefix_cache)
            log_odds[chunk] = log_odds_negative(scores.logprobs, prepared.label_ids, scores.floor) - prepared.bias
            for label, values in class_scores(scores.logprobs, prepared.label_ids, scores.floor).items():
                classes[label][chunk] = values
            if scores.hidden is not None:
                if hidden is None:
                    hidden = np.zeros((len(texts), *scores.hidden.shape[1:]), dtype=np.float32)
                hidden[chunk] = scores.hidden
            for i in chunk:
                langs[i], truncated[i] = lang, bodies[i][1]
            done += len(chunk)
            if progress:
                progress(done)
    return Reading(log_odds=log_odds, classes=classes, hidden=hidden, langs=langs, truncated=truncated,
                   readouts=readouts if hidden is not None else ())


def sentiment_readouts(engine: Engine) -> tuple[Readout, ...]:
    """The hidden states the engine's label head reads (none for the zero-shot readout)."""
    return tuple(part.readout for part in engine.head.parts.values()) if engine.head else ()


def sentiments_from(reading: Reading, engine: Engine) -> list[Sentiment]:
    """One Sentiment per text of `reading`: the engine's learned head where it has one for the text's language,
    else the zero-shot readout."""
    head = engine.head
    log_odds = reading.log_odds.copy()
    langs = np.array(reading.langs)
    used = np.zeros(len(langs), dtype=bool)
    for lang, part in (head.parts.items() if head else ()):
        rows = langs == lang
        if rows.any():
            log_odds[rows] = part.log_odds(reading.state(part.readout)[rows], reading.log_odds[rows])
            used |= rows
    threshold = engine.settings.uncertain_below
    results = []
    for i, p_negative in enumerate(sigmoid(log_odds).tolist()):
        confidence = max(p_negative, 1.0 - p_negative)
        results.append(Sentiment(label=LABELS[1] if p_negative >= 0.5 else LABELS[0], confidence=confidence,
                                 p_negative=p_negative, uncertain=confidence < threshold,
                                 prompt_version=engine.prompt.version, lang=reading.langs[i],
                                 truncated=reading.truncated[i], head_id=head.head_id if used[i] else None))
    return results


def classify(texts: Sequence[str], *, engine: Engine, batch_size: int | None = None,
             use_prefix_cache: bool = True, progress: Callable[[int], None] | None = None) -> list[Sentiment]:
    """One Sentiment per text, in order (sentiment only; `aio_core.assessment.assess` reads risk from the same
    pass). `progress` gets the number of texts finished."""
    reading = read(texts, engine=engine, readouts=sentiment_readouts(engine), batch_size=batch_size,
                   use_prefix_cache=use_prefix_cache, progress=progress)
    return sentiments_from(reading, engine)
