"""Replies: streamed text equals the whole text, history fits its budget, tone follows the label."""

from __future__ import annotations

import contextlib

import pytest

from aio_core.classify import Sentiment
from aio_core.prompts import assistant_system_prompt
from aio_core.reply import ReplyOptions, build_messages, generate_tokens, reply, reply_text, trim_history
from aio_core.templating import encode_chat

NEGATIVE = Sentiment(label="negative", confidence=0.9, p_negative=0.9, uncertain=False, prompt_version="v", lang="en",
                     truncated=False)
POSITIVE = Sentiment(label="positive", confidence=0.9, p_negative=0.1, uncertain=False, prompt_version="v", lang="zh",
                     truncated=False)


@pytest.mark.parametrize("options", [ReplyOptions(seed=1, max_new_tokens=40),
                                     ReplyOptions(temperature=0, max_new_tokens=40),
                                     ReplyOptions(seed=2, top_k=5, repetition_penalty=1.3, max_new_tokens=40)])
def test_streaming_yields_the_same_text_as_the_whole_reply(engine, options):
    history = [{"role": "user", "content": "今天的实验终于成功了，太棒了！"}]
    pieces = list(reply(history, engine=engine, sentiment=POSITIVE, options=options))
    assert len(pieces) > 1  # it really streamed
    assert "".join(pieces) == reply_text(history, engine=engine, sentiment=POSITIVE, options=options)


def test_same_seed_same_reply_and_token_limit_holds(engine):
    history = [{"role": "user", "content": "hello"}]
    options = ReplyOptions(seed=5, max_new_tokens=12)
    first = reply_text(history, engine=engine, options=options)
    assert first == reply_text(history, engine=engine, options=options)
    assert len(list(generate_tokens(engine, build_messages(engine, history, None), options))) == 12


def test_tone_adapts_to_the_label_and_language():
    assert assistant_system_prompt("en", "negative") != assistant_system_prompt("en", "positive")
    assert "hard time" in assistant_system_prompt("en", "negative")
    assert "开心" in assistant_system_prompt("zh", "positive")
    assert assistant_system_prompt("en", "negative", uncertain=True) == assistant_system_prompt("en", None)


def test_system_prompt_follows_the_users_language_and_sentiment(engine):
    messages = build_messages(engine, [{"role": "user", "content": "我今天很难过"}], NEGATIVE)
    assert messages[0] == {"role": "system", "content": assistant_system_prompt("zh", "negative")}


def test_history_is_trimmed_to_the_budget_keeping_the_newest(engine):
    history = []
    for i in range(30):
        history += [{"role": "user", "content": f"question {i} " + "x" * 40},
                    {"role": "assistant", "content": f"answer {i} " + "y" * 40}]
    history.append({"role": "user", "content": "the latest question"})
    kept = trim_history(engine.tokenizer, history, budget=300)
    assert kept[-1]["content"] == "the latest question"
    assert kept[0]["role"] == "user"
    assert sum(len(engine.tokenizer(m["content"])["input_ids"]) + 8 for m in kept) <= 300
    assert len(kept) < len(history) and kept == history[-len(kept):]


def test_a_huge_last_message_is_clipped_not_dropped(engine):
    kept = trim_history(engine.tokenizer, [{"role": "user", "content": "start " + "z" * 50_000 + " end"}], 200)
    assert len(kept) == 1 and kept[0]["content"].startswith("start") and kept[0]["content"].endswith("end")
    assert len(engine.tokenizer(kept[0]["content"])["input_ids"]) <= 100


def test_reply_stops_at_the_end_of_turn_token(engine):
    """With the end token made the most likely at every step, the reply is empty rather than running on."""
    im_end = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def prefer_end(_module, _inputs, logits):
        logits[..., im_end] = logits.max() + 10.0
        return logits

    hook = engine.backend.model.get_output_embeddings().register_forward_hook(prefer_end)
    try:
        text = reply_text([{"role": "user", "content": "hi"}], engine=engine,
                          options=ReplyOptions(temperature=0, max_new_tokens=30))
    finally:
        hook.remove()
    assert text == ""


def test_a_reply_stays_in_the_users_script_and_never_repeats_a_span_of_the_conversation(engine):
    """The tiny model's random weights would happily emit any script; the reply's processors forbid the other
    language's script and any 4-token span already in the conversation."""
    from aio_core.reply import NO_REPEAT_NGRAM, generate_tokens, other_script_ids

    banned = set(other_script_ids(engine.tokenizer, "en"))
    assert banned and all(not any("\u4e00" <= ch <= "\u9fff" for ch in engine.tokenizer.decode([i]))
                          for i in set(range(len(engine.tokenizer))) - banned - set(engine.tokenizer.all_special_ids))
    messages = build_messages(engine, [{"role": "user", "content": "the the the the the the"}], NEGATIVE)
    ids = list(generate_tokens(engine, messages, ReplyOptions(seed=5, max_new_tokens=40)))
    assert not banned & set(ids)
    prompt = encode_chat(engine.tokenizer, messages, template_kwargs=engine.profile.template_kwargs)
    sequence = prompt + ids
    grams = [tuple(sequence[i:i + NO_REPEAT_NGRAM]) for i in range(len(sequence) - NO_REPEAT_NGRAM + 1)]
    new = grams[len(prompt) - NO_REPEAT_NGRAM + 1:]
    assert all(grams.count(g) == 1 for g in new)


@pytest.mark.parametrize("marked", [True, False])
def test_a_reply_goes_first_while_a_screening_job_works_in_the_background(engine, marked):
    """A screening job's passes pause while a reply streams (counted between its first and last token); the control,
    the same loop not marked as background work, keeps taking turns with the reply's tokens."""
    import threading
    import time

    from aio_core.backends.base import background_work
    from aio_core.workflows import assess

    passes, stop = [0], threading.Event()

    def screening() -> None:
        with background_work() if marked else contextlib.nullcontext():
            while not stop.is_set():
                assess([f"comment {passes[0]} on the lesson"] * 4, engine=engine)
                passes[0] += 1

    worker = threading.Thread(target=screening)
    worker.start()
    while passes[0] < 3:  # the screening is under way
        time.sleep(0.01)
    messages = build_messages(engine, [{"role": "user", "content": "hello there"}], None)
    tokens = generate_tokens(engine, messages, ReplyOptions(max_new_tokens=60, temperature=0.0), stop_at_end=False)
    next(tokens)
    at_first = passes[0]
    assert len(list(tokens)) == 59
    during = passes[0] - at_first
    stop.set()
    worker.join()
    if marked:
        assert during <= 1, during  # at most the pass already under way when the reply began
    else:
        assert during > 5, during
