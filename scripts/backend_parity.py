"""Labels and greedy replies of one model through two backends (e.g. in process vs a vLLM server), on a labelled
CSV: accuracy, label agreement, |delta p(negative)|, labels/s and decode tokens/s of each. README, "Scaling out".

    python scripts/backend_parity.py ~/.cache/aio-eval-model/hf openai+http://127.0.0.1:8012/v1 \
        ../shared/data/sentiment_dev_600.csv

Run the two one after the other on an otherwise idle machine (a server that is up but idle costs little).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aio_core.classify import classify  # noqa: E402
from aio_core.engine import load_engine  # noqa: E402
from aio_core.reply import ReplyOptions, build_messages, generate_tokens  # noqa: E402
from aio_core.settings import Settings  # noqa: E402

CONVERSATIONS = ["I failed my exam today and I feel stupid.", "今天和朋友吵架了，心里很烦。",
                 "Can you recommend a good book for a long train ride?", "我们班赢了篮球比赛！"]


def run(model: str, texts: list[str]) -> dict:
    engine = load_engine(Settings.from_env(model=model, head="off", db_url="sqlite://"))
    classify(texts[:16], engine=engine)  # prepares the prompts
    started = time.perf_counter()
    labels = classify(texts, engine=engine)
    seconds = time.perf_counter() - started
    greedy = ReplyOptions(temperature=0, max_new_tokens=64, no_repeat_ngram_size=0)
    started, tokens, replies = time.perf_counter(), 0, []
    for text in CONVERSATIONS:
        ids = list(generate_tokens(engine, build_messages(engine, [{"role": "user", "content": text}], None), greedy))
        tokens += len(ids)
        replies.append(engine.tokenizer.decode(ids, skip_special_tokens=True))
    return {"p": np.array([s.p_negative for s in labels]), "labels": [s.label for s in labels],
            "labels_per_s": len(texts) / seconds, "tokens_per_s": tokens / (time.perf_counter() - started),
            "replies": replies, "runtime": engine.backend.runtime}


def main(first: str, second: str, data: str) -> None:
    rows = list(csv.DictReader(open(data, encoding="utf-8")))
    texts, truth = [r["text"] for r in rows], [r["label"] for r in rows]
    a, b = run(first, texts), run(second, texts)
    for name, r in ((first, a), (second, b)):
        accuracy = np.mean([x == y for x, y in zip(r["labels"], truth, strict=True)])
        print(f"{name}: accuracy {accuracy:.4f}, {r['labels_per_s']:.2f} labels/s, {r['tokens_per_s']:.2f} tokens/s, "
              f"runtime {r['runtime']}")
    delta = np.abs(a["p"] - b["p"])
    agree = sum(x == y for x, y in zip(a["labels"], b["labels"], strict=True))
    print(f"labels agreeing: {agree}/{len(texts)}; |delta p(negative)| median {np.median(delta):.4f}, "
          f"90th pct {np.quantile(delta, 0.9):.4f}, max {delta.max():.4f}")
    same = sum(x == y for x, y in zip(a["replies"], b["replies"], strict=True))
    print(f"greedy replies identical: {same}/{len(CONVERSATIONS)}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
