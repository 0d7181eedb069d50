"""A reply a school counsellor would sign: reviewed words chosen by the model's own reading of the message, and a
model-written sentence only where it passes a guard.

A 0.5B model improvising freely blamed, insulted and cheered at students who were down (issue 23). So a reply is put
together from the reviewed library (`aio_core/data/reply_library.json`, `library.py`):

1. the **opening** is one of the library's openings for the message's situation (`situation.py`: the model's own
   reading of what the message is about, from the same pass as sentiment and risk; "unsure" when it cannot tell,
   then the general entry of the message's tone), streamed at once;
2. `AIO_REPLY=library` (the default) adds the situation's **follow-up** from the library. `AIO_REPLY=guarded` first
   lets the model write `CANDIDATES` one-sentence continuations in one batched pass (the prompt read once) and runs
   the **guard** on each: the checks a person makes at a glance (`guard.check_reply`), the label head's reading of the
   sentence (a glad sentence to a student who is down is refused), and the reply judge (`judge.py`) where one is
   fitted. The best sentence that passes replaces the follow-up (kind "guarded"); when all are refused the follow-up
   is used (kind "library"). Guarded is not the default because, read by counsellors on 160 dev conversations, 15% of
   the model's sentences were harmful and no judge on its hidden states told them from good ones (README, Replies);
3. a message at concern level gets the library's gentle line pointing to a trusted adult; an urgent one never gets
   here (the reviewed safe message, `reply.safe_reply`). A later turn of a conversation gets the general words of its
   tone, not a situation's opening (a follow-up read alone was taken for another situation).

`AIO_REPLY=free` is the old free generation, unguarded ("generated"), kept to measure against. Where a reply came
from is stored with it (`Message.reply_kind`) and shown to staff, never to the student.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from aio_core.backends import Candidate, Readout
from aio_core.classify import Sentiment, classify
from aio_core.engine import Engine
from aio_core.guard import check_reply
from aio_core.library import Library, load_library
from aio_core.prompts import detect_lang
from aio_core.reply import DEFAULT_OPTIONS, NO_REPEAT_NGRAM, ReplyOptions, build_messages, other_script_ids, reply
from aio_core.risk import Risk
from aio_core.situation import UNSURE
from aio_core.templating import Message, Tokenizer, encode_chat, encode_content

KINDS = {  # Message.reply_kind: where the words came from, as staff are told (never the student)
    "guarded": "reviewed opening + one model sentence that passed the guard",
    "library": "reviewed reply library only",
    "generated": "free model generation, unguarded",
    "safe": "reviewed safe message",
}
CANDIDATES = 3  # sentences sampled at once for the guard to choose from
SENTENCE_TOKENS = 48  # a sentence longer than this is cut off, so refused (ends_cleanly)
_SENTENCE_ENDS = (".", "!", "?", "。", "！", "？", "\n")


@lru_cache(maxsize=8)
def _sentence_end_ids(tokenizer: Tokenizer) -> frozenset[int]:
    """Tokens after which a sentence is over: those whose text ends with a full stop, ! or ? (either script), or a
    line break. A decimal point inside "3.5" is a token of its own only rarely, and then the candidate is refused
    for its length or its end, not shown cut."""
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return frozenset(i for i, text in enumerate(texts)
                     if i not in special and text.rstrip(" ").endswith(_SENTENCE_ENDS))


@dataclass(frozen=True)
class Verdict:
    """The guard's reading of one candidate sentence."""

    text: str
    failed: tuple[str, ...]  # the checks it failed; () = it may be shown
    p_negative: float | None  # the label head's reading of the sentence
    p_fine: float | None = None  # the reply judge's, where one is fitted

    @property
    def passed(self) -> bool:
        return not self.failed


def choose(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The sentence to show: among those that passed every check, the one the judge likes best (the first sampled
    when there is no judge); None when every one was refused."""
    passed = [v for v in verdicts if v.passed]
    if not passed:
        return None
    return max(passed, key=lambda v: v.p_fine if v.p_fine is not None else 0.0)


def guard_candidates(engine: Engine, conversation: Sequence[Message], opening: str, candidates: Sequence[Candidate],
                     *, lang: str, system: str, sentiment: Sentiment | None) -> list[Verdict]:
    """Every candidate through the guard: the checks, the label head on the sentence, the judge on its hidden
    states. The sentences are labelled in one batch."""
    texts = [engine.tokenizer.decode(c.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()
             for c in candidates]
    readable = [i for i, text in enumerate(texts) if text]
    p_negative: list[float | None] = [None] * len(texts)
    for i, s in zip(readable, classify([texts[i] for i in readable], engine=engine) if readable else [], strict=True):
        p_negative[i] = s.p_negative
    judged: list = [None] * len(texts)
    judge = engine.judge
    hidden = [c.hidden for c in candidates]
    if judge is not None and all(h is not None for h in hidden):
        judged = judge.judge(np.stack(hidden))
    said = [*conversation, {"role": "assistant", "content": opening}]
    down = sentiment is not None and sentiment.label == "negative"
    up = sentiment is not None and sentiment.label == "positive" and not sentiment.uncertain
    verdicts = []
    for text, candidate, p, j in zip(texts, candidates, p_negative, judged, strict=True):
        checks = check_reply(text, said, lang, system, hit_limit=not candidate.finished, down=down, up=up,
                             reply_p_negative=p, sentence=True)
        failed = [name for name, ok in checks.items() if not ok]
        if j is not None and j.refused:
            failed.append("judge")
        verdicts.append(Verdict(text, tuple(failed), p, None if j is None else j.p_fine))
    return verdicts


@dataclass
class Composed:
    """A reply being put together: iterate it for the text pieces as they are ready. `kind` is final once the
    iteration has ended ("guarded" becomes "library" when every candidate was refused); `verdicts` holds the
    guard's reading of each candidate, for staff and `eval-replies`, never for the student."""

    kind: str
    library_version: str | None
    situation: str
    _pieces: Iterator[str] = field(repr=False)
    verdicts: list[Verdict] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list, repr=False)
    opening: str = ""

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def text(self) -> str:
        return "".join(self)


def compose(history: Sequence[Message], *, engine: Engine, sentiment: Sentiment | None, risk: Risk | None = None,
            situation: str = UNSURE, method: str | None = None, options: ReplyOptions = DEFAULT_OPTIONS,
            readout: Readout | None = None) -> Composed:
    """The assistant's reply to `history` (ending with the student's message), by `method` (AIO_REPLY when None).
    An urgent message never comes here: it gets the reviewed safe message. `readout`: where to read each
    candidate's hidden state when no judge asks for one (`eval-replies` keeps them to fit a judge on)."""
    method = method or engine.settings.reply
    if method == "free":
        return Composed("generated", None, situation, iter(reply(history, engine=engine, sentiment=sentiment,
                                                                  options=options)))
    library = load_library(engine.settings.reply_library)
    last = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
    lang = detect_lang(last)
    composed = Composed("guarded" if method == "guarded" else "library", library.version, situation, iter(()))
    composed._pieces = _pieces(composed, history, engine=engine, sentiment=sentiment, risk=risk, library=library,
                               lang=lang, key=last, options=options, readout=readout)
    return composed


def _pieces(composed: Composed, history: Sequence[Message], *, engine: Engine, sentiment: Sentiment | None,
            risk: Risk | None, library: Library, lang: str, key: str, options: ReplyOptions,
            readout: Readout | None) -> Iterator[str]:
    # A situation's opening greets a new disclosure; a later turn of the same talk ("mum says we can get another one
    # someday") read alone was taken for another situation (a fight at home for a dead dog), so it gets the
    # general words of its tone.
    later_turn = any(m["role"] == "assistant" for m in history)
    situation = library.entry_for(UNSURE if later_turn else composed.situation,
                                  sentiment.p_negative if sentiment else None)
    space = "" if lang == "zh" else " "
    opening = composed.opening = library.opening(situation, lang, key)
    yield opening
    sentence = None
    if composed.kind == "guarded":
        messages = build_messages(engine, history, sentiment)
        candidates = _candidates(engine, messages, opening, lang, options, readout)
        composed.candidates = candidates
        composed.verdicts = guard_candidates(engine, messages[1:], opening, candidates, lang=lang,
                                             system=messages[0]["content"], sentiment=sentiment)
        chosen = choose(composed.verdicts)
        sentence = chosen.text if chosen else None
    if sentence is None:
        composed.kind = "library"
        sentence = library.follow_up(situation, lang, key)
    yield space + sentence
    if risk is not None and risk.level == "concern":  # over-cautious beats ignoring "算了 就这样吧"
        yield space + library.concern_line(lang, key)


def _candidates(engine: Engine, messages: Sequence[Message], opening: str, lang: str, options: ReplyOptions,
                readout: Readout | None) -> list[Candidate]:
    """`CANDIDATES` one-sentence continuations of the assistant's turn after `opening`, sampled in one batch, with
    the mean hidden state over each sentence at the judge's readout (when a judge is fitted, else at `readout`)."""
    chosen = {k: v for k, v in vars(options).items() if v is not None and k != "same_script"}
    sampling = replace(engine.profile.generation, **{"max_new_tokens": SENTENCE_TOKENS, **chosen})
    if not sampling.no_repeat_ngram_size:
        sampling = replace(sampling, no_repeat_ngram_size=NO_REPEAT_NGRAM)
    if options.same_script:
        sampling = replace(sampling, suppress_ids=other_script_ids(engine.tokenizer, lang))
    prompt = encode_chat(engine.tokenizer, messages, template_kwargs=engine.profile.template_kwargs)
    prompt += encode_content(engine.tokenizer, opening + ("" if lang == "zh" else " "))
    readout = engine.judge.readout if engine.judge is not None else readout
    return engine.backend.candidates(prompt, sampling, CANDIDATES, ends=_sentence_end_ids(engine.tokenizer),
                                     readout=readout)
