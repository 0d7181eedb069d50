"""Speed and memory, measured by the project itself, with the seed article's method as the baseline in the same run.

`run_bench` starts two child processes on the same model and the same threads: one measures the engine (load time,
single-text label latency, bulk throughput, reply speed, peak RSS), the other the seed method (fp32, free generation
of 2 tokens, one text at a time). Separate processes keep each peak RSS honest (the seed's fp32 copy of the model
would otherwise count against the engine) and the ratios fair (both ran minutes apart on the same machine).
Without a model it measures random weights of the real Qwen1.5-0.5B shape with the stand-in tokenizer.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from aio_core.bench_texts import BENCH_TEXTS
from aio_core.errors import UserError
from aio_core.settings import Settings

REPLY_TOKENS = 64


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kilobytes


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_engine(settings: Settings, *, quick: bool) -> dict:
    """Figures of the engine itself, in this process."""
    from aio_core.classify import classify, prepared_prompt
    from aio_core.engine import load_engine
    from aio_core.reply import ReplyOptions, generate_tokens, other_script_ids

    started = time.perf_counter()
    engine = load_engine(settings)
    load_s = time.perf_counter() - started
    texts = list(BENCH_TEXTS[:12] if quick else BENCH_TEXTS)
    started = time.perf_counter()
    for lang in engine.prompt.variants:  # the one-time preparation, reported apart from per-text figures
        prepared_prompt(engine, lang)
        other_script_ids(engine.tokenizer, lang)  # the reply's script filter, built once per language
    prepare_s = time.perf_counter() - started
    single = []
    for text in texts * (1 if quick else 2):
        tick = time.perf_counter()
        classify([text], engine=engine)
        single.append(1000 * (time.perf_counter() - tick))
    bulk = texts * (2 if quick else 4)
    tick = time.perf_counter()
    classify(bulk, engine=engine)
    bulk_items_per_s = len(bulk) / (time.perf_counter() - tick)
    first, rates = [], []
    for run in range(1 if quick else 2):
        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": texts[run]}]
        tick = time.perf_counter()
        stamps = []
        for _ in generate_tokens(engine, messages, ReplyOptions(max_new_tokens=REPLY_TOKENS, seed=run),
                                 stop_at_end=False):
            stamps.append(time.perf_counter())
        first.append(1000 * (stamps[0] - tick))
        rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    turns = chat_turns(engine, texts[:2] if quick else [t for t in texts if _down(t)][:4] + texts[:2])
    return {
        **turns,
        "classify_ms_p50": statistics.median(single),
        "classify_ms_p90": _percentile(single, 0.9),
        "bulk_items_per_s": bulk_items_per_s,
        "bulk_batch_size": settings.batch_size,
        "first_token_ms": statistics.median(first),
        "decode_tokens_per_s": statistics.median(rates),
        "load_s": load_s,
        "prepare_s": prepare_s,
        "peak_rss_mb": _peak_rss_mb(),
        "dtype": engine.backend.runtime["dtype"],
        "threads": engine.backend.runtime["threads"],
        "model": engine.name,
        "prompt_version": engine.prompt.version,
        "texts": len(texts),
    }


def _down(text: str) -> bool:
    return any(word in text for word in ("累", "难受", "没用", "失望", "sad", "alone", "failed", "hate"))


def chat_turns(engine, messages: list[str]) -> dict:
    """What a student waits for, per method: from sending a message to the first words of the reply and to its end
    (the message read once for sentiment, risk and situation, then the reply), medians over `messages`."""
    from aio_core.assessment import assess
    from aio_core.compose import compose
    from aio_core.reply import ReplyOptions

    found: dict[str, float] = {}
    for method in ("library", "guarded", "free"):
        first, whole = [], []
        for run, text in enumerate(messages):
            tick = time.perf_counter()
            reading = assess([text], engine=engine)[0]
            composed = compose([{"role": "user", "content": text}], engine=engine, sentiment=reading.sentiment,
                               risk=reading.risk, situation=reading.situation, method=method,
                               options=ReplyOptions(seed=run))
            stamps = [time.perf_counter() for _ in composed]
            first.append(1000 * (stamps[0] - tick) if stamps else float("nan"))
            whole.append(1000 * (time.perf_counter() - tick))
        found[f"turn_{method}_first_words_ms"] = statistics.median(first)
        found[f"turn_{method}_whole_ms"] = statistics.median(whole)
    found["turn_messages"] = len(messages)
    return found


def measure_seed(settings: Settings, *, quick: bool) -> dict:
    """The seed article's method on the same model, in fp32 as the article ran it."""
    from aio_core.backends.inprocess import load_inprocess
    from aio_core.backends.seed import seed_classify

    backend = load_inprocess(settings.replace(dtype="float32"))
    texts = list(BENCH_TEXTS[:6] if quick else BENCH_TEXTS[::2])
    seed_classify(backend, texts[0])  # warm-up, as the engine's prompt preparation
    tick = time.perf_counter()
    labels = [seed_classify(backend, text) for text in texts]
    return {"seed_ms_per_item": 1000 * (time.perf_counter() - tick) / len(texts), "seed_texts": len(texts),
            "seed_positive_share": labels.count("positive") / len(labels), "seed_peak_rss_mb": _peak_rss_mb()}


PHASES: dict[str, Callable[..., dict]] = {"engine": measure_engine, "seed": measure_seed}


def _child(phase: str, settings: Settings, quick: bool, log: Callable[[str], None]) -> dict:
    command = [sys.executable, "-m", "aio_core", "--model", settings.model, "--dtype", settings.dtype,
               "--threads", str(settings.threads), "bench", "--phase", phase] + (["--quick"] if quick else [])
    log(f"bench: measuring the {phase} ({settings.model}) ...")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"The {phase} measurement failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_bench(settings: Settings, *, quick: bool, log: Callable[[str], None] = lambda _: None) -> dict:
    """Both measurements and their ratios, as the JSON object `bench --json` prints."""
    result = _child("engine", settings, quick, log) | _child("seed", settings, quick, log)
    result["classify_speedup_vs_seed"] = result["seed_ms_per_item"] / result["classify_ms_p50"]
    result["bulk_speedup_vs_seed"] = result["bulk_items_per_s"] * result["seed_ms_per_item"] / 1000
    return result


def format_bench(r: dict) -> str:
    return "\n".join([
        f"model {r['model']}  dtype {r['dtype']}  threads {r['threads']}  prompt {r['prompt_version']}",
        f"seed method (fp32, generate 2 tokens)   {r['seed_ms_per_item']:8.0f} ms/text",
        f"label, one text                 p50 {r['classify_ms_p50']:8.0f} ms   p90 {r['classify_ms_p90']:.0f} ms"
        f"   {r['classify_speedup_vs_seed']:.1f}x the seed",
        f"label, bulk (batch {r['bulk_batch_size']:>2})            {r['bulk_items_per_s']:8.1f} texts/s"
        f"   {r['bulk_speedup_vs_seed']:.1f}x the seed",
        f"reply   first token {r['first_token_ms']:6.0f} ms   decode {r['decode_tokens_per_s']:.1f} tokens/s",
        f"chat turn, library (default): first words {r['turn_library_first_words_ms']:6.0f} ms   whole reply "
        f"{r['turn_library_whole_ms']:6.0f} ms   (median of {r['turn_messages']} messages)",
        f"chat turn, guarded:           first words {r['turn_guarded_first_words_ms']:6.0f} ms   whole reply "
        f"{r['turn_guarded_whole_ms']:6.0f} ms",
        f"chat turn, free generation:   first words {r['turn_free_first_words_ms']:6.0f} ms   whole reply "
        f"{r['turn_free_whole_ms']:6.0f} ms",
        f"load {r['load_s']:.1f} s (+{r['prepare_s']:.1f} s prompt preparation)   peak RSS {r['peak_rss_mb']:.0f} MB",
    ])
