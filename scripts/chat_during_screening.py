"""Reply speed of the shared in-process model alone, and while a screening loop runs in another thread of the same
process (as the dashboard's background job does): marked as background work (the default), or `--unmarked`, taking
turns by the model's lock alone. README, "Performance".

    python scripts/chat_during_screening.py ~/.cache/aio-eval-model/hf [--unmarked]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aio_core.backends.base import background_work  # noqa: E402
from aio_core.engine import get_engine  # noqa: E402
from aio_core.reply import ReplyOptions, build_messages, generate_tokens  # noqa: E402
from aio_core.settings import Settings  # noqa: E402
from aio_core.workflows import assess  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "sentiment_dev_600.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--unmarked", action="store_true", help="the screening is not marked as background work")
    args = parser.parse_args()
    engine = get_engine(Settings.from_env(model=args.model))
    texts = [row["text"] for row in csv.DictReader(DATA.open(encoding="utf-8"))]
    history = [{"role": "user", "content": "I had a long day at school and I feel tired. Any tips to relax tonight?"}]
    messages = build_messages(engine, history, None)
    options = ReplyOptions(max_new_tokens=40, temperature=0.0)

    def timed_reply() -> str:
        started, first, count = time.perf_counter(), None, 0
        for _ in generate_tokens(engine, messages, options, stop_at_end=False):
            count += 1
            first = first if first is not None else time.perf_counter() - started
        return f"first token {first:.2f} s, {count / (time.perf_counter() - started):.1f} tokens/s"

    assess(texts[:16], engine=engine)  # warm
    print("alone:           ", timed_reply(), flush=True)
    stop = threading.Event()

    def screening() -> None:
        with contextlib.nullcontext() if args.unmarked else background_work():
            start = 0
            while not stop.is_set():
                assess(texts[start:start + 32], engine=engine)
                start = (start + 32) % (len(texts) - 32)

    worker = threading.Thread(target=screening)
    worker.start()
    time.sleep(3)
    print("during screening:", timed_reply(), "(unmarked)" if args.unmarked else "(background work)", flush=True)
    stop.set()
    worker.join()


if __name__ == "__main__":
    main()
