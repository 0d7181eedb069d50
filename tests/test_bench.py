"""The benchmark's parts on the tiny model: its JSON shape, the seed baseline really running, and the stand-in
tokenizer staying close to the real Qwen tokenizer. No timing is asserted (speed lives in `bench`, not in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aio_core.backends.seed import seed_classify
from aio_core.backends.tiny import QWEN15_05B_SHAPE, build_standin_tokenizer
from aio_core.bench_texts import BENCH_TEXTS, QWEN_TOKENS
from aio_core.measure.bench import measure_engine, measure_seed

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"classify_ms_p50", "classify_ms_p90", "bulk_items_per_s", "seed_ms_per_item", "classify_speedup_vs_seed",
        "bulk_speedup_vs_seed", "first_token_ms", "decode_tokens_per_s", "load_s", "peak_rss_mb", "dtype",
        "threads", "model", "turn_library_first_words_ms", "turn_library_whole_ms", "turn_guarded_first_words_ms",
        "turn_guarded_whole_ms", "turn_free_first_words_ms", "turn_free_whole_ms"}


def test_bench_texts_are_realistic_comments_in_both_languages():
    assert all(10 <= len(t) <= 150 for t in BENCH_TEXTS)
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in t) for t in BENCH_TEXTS) == len(BENCH_TEXTS) // 2
    assert len(QWEN_TOKENS) == len(BENCH_TEXTS)


def test_standin_tokenizer_counts_within_20_percent_of_qwen_on_every_bench_text():
    tokenizer = build_standin_tokenizer()
    counts = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in BENCH_TEXTS]
    ratios = [c / q for c, q in zip(counts, QWEN_TOKENS, strict=True)]
    assert all(0.8 - 1e-9 <= r <= 1.2 + 1e-9 for r in ratios), ratios
    assert abs(sum(counts) / sum(QWEN_TOKENS) - 1) < 0.05


def test_random_real_shape_matches_qwen15_05b():
    import torch

    with torch.device("meta"):  # the shape only; building the weights belongs to `bench`
        from transformers import Qwen2ForCausalLM

        from aio_core.backends.tiny import qwen2_config

        model = Qwen2ForCausalLM(qwen2_config(build_standin_tokenizer(), **QWEN15_05B_SHAPE))
    model.tie_weights()
    parameters = sum(p.numel() for p in model.parameters())
    assert 460e6 < parameters < 470e6  # Qwen1.5-0.5B: 464M with tied embeddings


def _forcing(engine, word: str):
    """A hook that makes `word` the model's next token at every step."""
    token = engine.tokenizer.convert_tokens_to_ids(word)

    def force(_module, _inputs, logits):
        logits[..., token] = logits.max() + 10.0
        return logits

    return engine.backend.model.get_output_embeddings().register_forward_hook(force)


def test_seed_method_as_written_always_says_positive_and_the_fixed_reading_follows_the_model(engine):
    # As written it decodes the prompt too, which itself contains "Positive": whatever the model says, "positive".
    hook = _forcing(engine, "Negative")
    try:
        as_written = {seed_classify(engine.backend, t) for t in ("terrible, awful", "这天气真糟糕", "")}
        fixed = seed_classify(engine.backend, "terrible", as_written=False)
    finally:
        hook.remove()
    assert as_written == {"positive"}
    assert fixed == "negative"  # reading only the new tokens hears the model's "Negative"
    hook = _forcing(engine, "Positive")
    try:
        assert seed_classify(engine.backend, "terrible", as_written=False) == "positive"
    finally:
        hook.remove()


def test_engine_and_seed_measurements_report_every_figure(engine):
    settings = engine.settings
    result = measure_engine(settings, quick=True) | measure_seed(settings, quick=True)
    assert KEYS - {"classify_speedup_vs_seed", "bulk_speedup_vs_seed"} <= set(result)
    assert result["seed_positive_share"] == 1.0  # the seed method really ran, as written
    assert result["model"] == "tiny-random" and result["dtype"] == "float32"
    assert all(result[k] > 0 for k in ("classify_ms_p50", "bulk_items_per_s", "seed_ms_per_item",
                                       "decode_tokens_per_s", "peak_rss_mb"))


def test_bench_command_prints_the_json_object_last(tmp_path):
    done = subprocess.run([sys.executable, "-m", "aio_core", "--model", "tiny-random", "bench", "--quick", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert result["classify_speedup_vs_seed"] == pytest.approx(result["seed_ms_per_item"] /
                                                               result["classify_ms_p50"])
    assert "seed method" in done.stdout
