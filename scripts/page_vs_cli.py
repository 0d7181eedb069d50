"""Rows/s of one CSV screened by the CLI and by the dashboard's Screen page (a background job, watched in headless
Chromium, and optionally with the tab closed after pressing Screen), one after the other, each into a fresh store.
README, "Performance".

    python scripts/page_vs_cli.py ~/.cache/aio-eval-model/hf ../shared/data/sentiment_tune_multidomain.csv \
        --rows 3000 [--closed]

The texts are the file's `text` column, shuffled with a fixed seed; persons are u0..u39. Needs Debian's chromium.
Run it alone: on 2 cores anything else busy changes the figures.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_csv(path: Path, texts: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["author", "comment"])
        writer.writerows([f"u{i % 40}", text] for i, text in enumerate(texts))
    return path


def summary_of(db: Path, name: str) -> str:
    """The summary line of the newest job for this file, once it has ended."""
    with sqlite3.connect(db) as connection:
        while True:
            found = connection.execute("SELECT status, summary, error FROM jobs WHERE file_name = ? ORDER BY id DESC",
                                       (name,)).fetchone()
            if found and found[0] not in ("queued", "running", "cancelling"):
                return found[1] or found[2]
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("file", help="a CSV with a text column")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--closed", action="store_true", help="also: a job whose tab is closed after pressing Screen")
    args = parser.parse_args()
    texts = [row["text"] for row in csv.DictReader(open(args.file, encoding="utf-8"))]
    random.Random(1).shuffle(texts)
    work = Path(tempfile.mkdtemp(prefix="aio-page-vs-cli-"))
    source = write_csv(work / "comments.csv", texts[:args.rows])
    env = {**os.environ, "AIO_MODEL": args.model, "AIO_AUTH": "off", "PYTHONPATH": str(ROOT),
           "AIO_DATA_DIR": str(work / "data")}
    cli = subprocess.run([sys.executable, "-m", "aio_core", "--db", f"sqlite:///{work / 'cli.db'}", "screen",
                          str(source), "--text-column", "comment", "--person-column", "author"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    print("CLI:             ", cli.stdout.strip().splitlines()[0], flush=True)

    from playwright.sync_api import sync_playwright

    runs = [("watched", write_csv(work / "watched.csv", texts[:args.rows]))]
    if args.closed:
        runs.append(("tab closed", write_csv(work / "closed.csv", texts[:args.rows])))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page_db = work / "page.db"
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port)],
                              cwd=ROOT, env={**env, "AIO_DB_URL": f"sqlite:///{page_db}"},
                              stdout=(work / "streamlit.log").open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                 args=["--no-sandbox"])
            warm = write_csv(work / "warm.csv", texts[-5:])
            for how, path in [("warm-up", warm), *runs]:  # the warm-up loads the model
                page = browser.new_page()
                page.goto(f"{base}/screen")
                page.locator("input[type='file']").set_input_files(str(path))
                button = page.get_by_test_id("stBaseButton-primary").filter(has_text="Screen ")
                button.wait_for(timeout=120_000)
                button.click()
                page.get_by_text("Screening now").first.wait_for(timeout=300_000)
                if how == "tab closed":
                    page.close()
                line = summary_of(page_db, path.name)
                if how != "warm-up":
                    print(f"page, {how}:".ljust(17), line.split(" as batch")[0], flush=True)
                if how != "tab closed":
                    page.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
