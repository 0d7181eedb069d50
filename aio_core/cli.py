"""`python -m aio_core`: every capability of the product from a terminal.

One parser, one handler per subcommand. Global flags (--model, --db, ...) override the `AIO_*` settings. A problem
the user can fix ends the command with one line on stderr and exit code 2; `--json` output is one JSON object per
line, the summary object last.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from aio_core.errors import UserError
from aio_core.settings import DEVICES, DTYPES, REPLY_METHODS, Settings

Handler = Callable[[argparse.Namespace, Settings], int]


@dataclass(frozen=True)
class Command:
    handler: Handler
    help: str
    arguments: tuple[tuple[tuple[str, ...], dict], ...]


COMMANDS: dict[str, Command] = {}


def arg(*names: str, **options: object) -> tuple[tuple[str, ...], dict]:
    """One argument of a command, as `argparse.add_argument` takes it, declared beside the command's handler."""
    return names, options


def command(name: str, help_text: str, *arguments: tuple[tuple[str, ...], dict]) -> Callable[[Handler], Handler]:
    """Register a CLI command: its name, its one-line help and its arguments, on the handler that runs it."""
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = Command(handler, help_text, arguments)
        return handler
    return register


def _progress(total: int, label: str):
    """A tqdm bar on stderr, or nothing when stderr is not a terminal and the run is short."""
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="text", file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=None if total < 50 else False)


def _engine(settings: Settings):
    from aio_core.engine import get_engine

    return get_engine(settings)


def _db(settings: Settings):
    from db.session import make_db

    return make_db(settings.db_url)


def _rule(settings: Settings):
    from aio_core.workflows import alert_rule

    return alert_rule(settings, _db(settings))


@command("classify", "label texts positive/negative (and store them, source cli)",
         arg("text", nargs="+", help="texts to label; '-' reads one text per line from stdin"),
         arg("--json", action="store_true", default=False, help="one JSON object per text"),
         arg("--person", default=None, help="store the texts as this person's (a handle)"),
         arg("--no-store", action="store_true", default=False, help="do not store the texts"))
def _classify(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows import assess, store_assessed

    texts = args.text if args.text != ["-"] else [line.rstrip("\n") for line in sys.stdin if line.strip()]
    engine = _engine(settings)
    results = assess(texts, engine=engine)
    if not args.no_store:
        store_assessed(_db(settings), texts, results, engine=engine, source="cli", person=args.person,
                       author=_actor(), rule=_rule(settings))
    for text, (s, r) in zip(texts, results, strict=True):
        if args.json:
            print(json.dumps({"text": text, "label": s.label, "confidence": round(s.confidence, 4),
                              "p_negative": round(s.p_negative, 4), "uncertain": s.uncertain,
                              "prompt_version": s.prompt_version, "head_id": s.head_id, "truncated": s.truncated,
                              "risk": r.level if r else None, "risk_category": r.category if r else None},
                             ensure_ascii=False))
        else:
            risk = f"  RISK {r.level} ({r.category})" if r and r.risky else ""
            print(f"{s.seed_line}  ({s.badge('en')}){risk}  {text}")
    if engine.is_random:
        print(f"note: {engine.description}", file=sys.stderr)
    return 0


@command("chat", "chat in the terminal: label line, then the streamed reply; every turn is stored",
         arg("--person", default=None, help="who is chatting (a handle); their earlier chat is reloaded"),
         arg("--temperature", type=float, default=None),
         arg("--top-p", type=float, default=None),
         arg("--max-new-tokens", type=int, default=None))
def _chat(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.compose import KINDS
    from aio_core.reply import ReplyOptions
    from aio_core.workflows.conversation import start_turn

    engine, db = _engine(settings), _db(settings)
    options = ReplyOptions(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    print(f"Chatting with {engine.description}; replies: {engine.reply_reader}. Empty line or Ctrl-D ends.",
          file=sys.stderr)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        turn = start_turn(text, person=args.person, engine=engine, db=db, rule=_rule(settings), options=options,
                          author=_actor())
        risk = (f" RISK {turn.risk.level} ({turn.risk.category}): an alert is open; this is the reviewed safe reply"
                if turn.reply_kind == "safe" else "")
        print(turn.sentiment.seed_line, f"({turn.sentiment.badge('en')}){risk}", flush=True)
        print("assistant> ", end="", flush=True)
        for piece in turn.reply:
            print(piece, end="", flush=True)
        print(f"\n  (reply: {KINDS[turn.reply_kind]})", flush=True)
    return 0


@command("screen", "label every row of a CSV of comments, store it as a batch, write the results",
         arg("file", help="the CSV (UTF-8, UTF-8 with BOM, UTF-16 or GBK/GB18030)"),
         arg("--text-column", required=True),
         arg("--person-column", default=None),
         arg("--time-column", default=None),
         arg("-o", "--output", default=None, help="write the input plus label/confidence/uncertain/flagged"),
         arg("--batch-size", type=int, default=None, help="texts per forward pass (AIO_BATCH_SIZE)"),
         arg("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
             help="classify on Ray Data (pip install -r requirements-scale.txt): a local Ray started for this "
                  "run, or the cluster at ADDRESS (auto, HOST:PORT); the store must be a file or PostgreSQL"),
         arg("--actors", type=int, default=1, help="with --ray: how many model copies work at once"))
def _screen(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows.screening import ScreenOptions, screen_file

    options = ScreenOptions(args.text_column, args.person_column, args.time_column)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress(total, "screening")
        bar.update(done - bar.n)

    if args.ray is not None:
        from aio_core.workflows.scaleout import screen_file_ray

        summary = screen_file_ray(args.file, options, settings=settings, out=args.output, progress=progress,
                                  address=None if args.ray == "local" else args.ray, actors=args.actors)
    else:
        engine, db = _engine(settings), _db(settings)
        summary = screen_file(args.file, options, engine=engine, db=db, out=args.output, progress=progress)
    if bar is not None:
        bar.close()
    print(summary.line())
    if args.output:
        print(f"results written to {args.output}")
    return 0


@command("jobs", "background screenings queued from the dashboard: list, cancel ID, or run the waiting ones here "
              "(after a restart, without the dashboard)",
         arg("action", nargs="?", choices=("list", "cancel", "run"), default="list"),
         arg("id", nargs="?", type=int, default=None),
         arg("--all", action="store_true", default=False, help="list: ended jobs of the last day too"))
def _jobs(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows.jobs import cancel, run_pending
    from db.jobs import list_jobs
    from db.session import reading

    db = _db(settings)
    if args.action == "run":
        ran = run_pending(settings, db)
        with reading(db) as session:
            ended = {j.id: j for j in list_jobs(session, ids=tuple(i for i, _ in ran))}
        for job_id, status in ran:
            print(f"job {job_id} {status}: {ended[job_id].summary or ended[job_id].error or ''}".rstrip(": "))
        if not ran:
            print("no job was waiting")
        return 0
    if args.action == "cancel":
        if args.id is None:
            raise UserError("Say which job to cancel: python -m aio_core jobs cancel ID (ids: jobs list).")
        status = cancel(args.id, db=db)
        if status is None:
            raise UserError(f"Job {args.id} is not queued or running; `jobs list --all` shows how it ended.")
        print(f"job {args.id} {status}" + (": it stops after the forward pass in hand" if status == "cancelling"
                                           else ""))
        return 0
    with reading(db) as session:
        jobs = list_jobs(session, active=not args.all)
    for job in jobs:
        speed = f" {job.rows_per_second:.1f} rows/s" if job.rows_per_second else ""
        print(f"{job.id}\t{job.status}\t{job.rows_done}/{job.rows}{speed}\tbatch {job.batch_id}\t{job.file_name}"
              f"\t{job.owner or ''}")
    if not jobs:
        print("no job is queued or running" if not args.all else "no job in the last day")
    return 0


@command("notify", "notifications: run the sender (e-mail, webhook, escalations, digests), or send a test",
         arg("action", choices=("run", "test")),
         arg("--once", action="store_true", default=False,
             help="run: one cycle, then exit (for cron or a systemd timer); without it, every 10 seconds"),
         arg("--to", default=None, metavar="ADDRESS", help="test: send a test e-mail to this address"),
         arg("--webhook", action="store_true", default=False, help="test: post a test to the webhook"))
def _notify(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from aio_core.workflows.notify import Channels, run_cycle, run_sender
    from aio_core.workflows.notify_setup import send_test

    db = _db(settings)
    if args.action == "test":
        for line in send_test(settings, db, to=args.to, webhook=args.webhook, by=_actor()):
            print(line)
        return 0
    channels = Channels.from_settings(settings)
    if not channels.any:
        raise UserError("No notification channel is set up: set AIO_SMTP_URL and AIO_SMTP_FROM (e-mail) or "
                        "AIO_WEBHOOK_URL (webhook), then run this again.")
    for name, transport in (("e-mail", channels.mail), ("webhook", channels.webhook)):
        print(f"{name}: {transport.describe() if transport else 'not set up'}", file=sys.stderr)
    if args.once:
        print(run_cycle(settings, db, channels=channels).line())
        return 0
    print("sending notifications until Ctrl-C", file=sys.stderr)
    run_sender(settings, db, stop=threading.Event(), report=lambda done: print(done.line(), flush=True))
    return 0


@command("eval", "accuracy on labelled CSVs (text,label[,lang][,domain][,risk]): per language and per domain, "
              "and risk recall/false alarms when a risk column is there",
         arg("file", nargs="+"),
         arg("--json", action="store_true", default=False, help="print the report as JSON, last line"),
         arg("--by", choices=("domain",), default=None,
             help="domain: the leave-one-domain-out report (the same as `study`)"),
         arg("--prompts", default=None, help=argparse.SUPPRESS),
         arg("--method", choices=("engine", "seed", "seed-fixed"), default="engine",
             help="seed: the seed article's method as written (for comparison); seed-fixed: the same, reading "
                  "only the generated tokens"))
def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.measure.evaluate import evaluate, format_report, read_labelled

    if args.by == "domain":  # the leave-one-domain-out report, with the study's defaults
        args.prompts, args.corrections = args.prompts or "v1-plain,v4-feels-masked", "0,20"
        return _study(args, settings)
    total = len(read_labelled(args.file))  # checks the files before the model loads
    engine = _engine(settings)
    with _progress(total, "evaluating") as bar:
        report = evaluate(args.file, engine=engine, method=args.method,
                          progress=lambda done: bar.update(done - bar.n))
    print(format_report(report))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    return 0


@command("eval-replies", "reply quality: make the next turn of each conversation (JSON Lines) and check it; "
                      "with --labels, count people's rubric verdicts per method",
         arg("file", help='one {"lang": "en"|"zh", "messages": [...]} per line, ending with a user turn; with '
                          '--labels, a file of --out results with a "rubric" verdict each'),
         arg("--method", choices=REPLY_METHODS, default=None,
             help="how replies are made (default AIO_REPLY): reviewed library, library opening + guarded model "
                  "sentence, or free generation"),
         arg("--labels", nargs="*", default=None, metavar="FILE",
             help="more labelled result files; prints harmful and acceptable-or-good rates per method"),
         arg("--keep-states", action="store_true", default=False,
             help="keep each candidate's hidden state in --out (to fit a reply judge on)"),
         arg("--json", action="store_true", default=False, help="print the summary as JSON, last line"),
         arg("--out", default=None, help="write each conversation with its reply and checks (JSON Lines)"),
         arg("--seed", type=int, default=1234),
         arg("--max-new-tokens", type=int, default=None))
def _eval_replies(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.measure.replies import (
        evaluate_replies,
        format_replies,
        format_rubric,
        read_conversations,
        read_labelled_replies,
        rubric_table,
    )
    from aio_core.reply import ReplyOptions

    if args.labels:
        rows = rubric_table(read_labelled_replies([args.file, *args.labels]))
        print(format_rubric(rows))
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        return 0
    conversations = read_conversations(args.file)  # checks the file before the model loads
    engine = _engine(settings)
    with _progress(len(conversations), "replying") as bar:
        summary, results = evaluate_replies(conversations, engine=engine, method=args.method,
                                            options=ReplyOptions(seed=args.seed, max_new_tokens=args.max_new_tokens),
                                            progress=lambda done: bar.update(done - bar.n),
                                            keep_states=args.keep_states)
    print(format_replies(summary, results))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps(result, ensure_ascii=False) + "\n")
        print(f"replies written to {args.out}")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    return 0


@command("study", "leave-one-domain-out: prompts, the learned head and corrections, per domain, mean and worst",
         arg("file", nargs="+", help="labelled CSVs; a domain column, or each file is one domain per language"),
         arg("--prompts", default="v1-plain,v4-feels-masked", help="prompt versions to compare (comma list)"),
         arg("--corrections", default="0,10,20,50",
             help="corrections from the held-out domain to add to the head (comma list)"),
         arg("--with-corrections", action="store_true", default=False,
             help="add the learning curve of the corrections stored in the database (k-fold)"),
         arg("--json", action="store_true", default=False, help="print the report as JSON, last line"))
def _study(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.head_fit import read_labelled
    from aio_core.measure.domains import format_study, study

    rows = read_labelled(args.file)
    engine = _engine(settings)
    bars: dict[str, object] = {}

    def progress(version: str, done: int, total: int) -> None:
        if version not in bars:
            bars[version] = _progress(total, f"reading with {version}")
        bars[version].update(done - bars[version].n)

    report = study(rows, engine=engine.with_head(None), prompts=args.prompts.split(","),
                   corrections=[int(k) for k in args.corrections.split(",") if k.strip()],
                   cache=settings.cache_dir, progress=progress)
    for bar in bars.values():
        bar.close()
    print(format_study(report))
    if args.with_corrections:
        from aio_core.workflows.learning import LEARN_FOLDS, corrections_curve_on

        count, curve = corrections_curve_on(rows, engine=engine, db=_db(settings))
        report["corrections_curve"] = curve
        print(f"\nlearning curve of the store's {count} corrections ({LEARN_FOLDS}-fold; the head fitted on these "
              "files plus N corrections, scored on corrections it was not fitted on):")
        for used, accuracy in curve.items():
            print(f"  {used:5d} corrections: {accuracy:.3f}")
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    return 0


@command("eval-risk", "how the engine as it is reads risk in CSVs (text,risk[,risk_category][,kind]): caught, "
                   "urgent, per category, false alarms, every mistake listed",
         arg("file", nargs="+"),
         arg("--json", action="store_true", default=False, help="print the report as JSON, last line"))
def _eval_risk(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.measure.risk_study import evaluate_risk, format_risk_eval
    from aio_core.risk_fit import read_risk_rows

    rows = read_risk_rows(args.file)  # checks the files before the model loads
    report = evaluate_risk(rows, engine=_engine(settings))
    print(format_risk_eval(report))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    return 0


@command("risk-study", "risk read leave-one-source-out: phrase lists, the risk head and both, per language and "
                    "category, with false alarms on look-alikes and ordinary text",
         arg("file", nargs="*", default=[], help="risk CSVs (text,risk,...,source); none = the shipped risk set"),
         arg("--ordinary", nargs="+", default=None, metavar="CSV",
             help="files of ordinary non-risk texts never fitted on (e.g. the multi-domain sentiment file)"),
         arg("--json", action="store_true", default=False, help="print the report as JSON, last line"))
def _risk_study(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.measure.risk_study import format_risk_study, read_ordinary, risk_study
    from aio_core.risk_fit import read_risk_rows, shipped_files

    rows = read_risk_rows(args.file or shipped_files())
    ordinary = read_ordinary(args.ordinary or [])
    engine = _engine(settings)
    bars: dict[str, object] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = _progress(total, stage)
        bars[stage].update(done - bars[stage].n)

    report = risk_study(rows, engine=engine, ordinary=ordinary, cache=settings.cache_dir, progress=progress)
    for bar in bars.values():
        bar.close()
    print(format_risk_study(report))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    return 0


@command("fit-head", "fit the label head (or, with --risk, the risk head; with --situation, the situation "
                  "head) for these weights and prompt on labelled CSVs (and corrections)",
         arg("file", nargs="*", default=[], help="labelled CSVs (text,label[,lang][,domain]); none = the "
                                                  "shipped set of the head being fitted"),
         arg("--missing", action="store_true", default=False,
             help="fit every head these weights lack (risk, label, situation) from the shipped sets: what the "
                  "dashboard does in the background at its first start"),
         arg("--judge", action="store_true", default=False,
             help="fit the reply judge on candidate sentences labelled with the rubric (JSON Lines)"),
         arg("--situation", action="store_true", default=False,
             help="fit the situation head (what a message is about, for the reply's opening) on "
                  "text,lang,situation,source CSVs"),
         arg("--risk", action="store_true", default=False,
             help="fit the risk head on risk CSVs (text,risk[,risk_category][,lang][,kind][,source])"),
         arg("--with-corrections", action="store_true", default=False,
             help="add the corrections (with --risk: the risk reviews) stored in the database, weighted above "
                  "file rows"),
         arg("--json", action="store_true", default=False))
def _fit_head(args: argparse.Namespace, settings: Settings) -> int:
    if args.risk:
        return _fit_risk_head(args, settings)
    if args.situation:
        return _fit_situation_head(args, settings)
    if args.judge:
        return _fit_judge(args, settings)
    if args.missing:
        return _fit_missing(args, settings)
    from aio_core.head_fit import read_labelled
    from aio_core.heads import shipped_files
    from aio_core.workflows.learning import fit_label_head

    total = len(read_labelled(args.file or shipped_files()))
    engine = _engine(settings)
    with _progress(total, "reading") as bar:
        head, path = fit_label_head(args.file, engine=engine, db=_db(settings) if args.with_corrections else None,
                                    progress=lambda done: bar.update(done - bar.n))
    meta = head.meta
    print(f"fitted head {head.head_id} on {meta['rows']} rows from {meta['domains']} domains "
          f"({'the shipped set' if meta['fitting_set'] == 'shipped' else 'your files'}) "
          f"+ {meta['corrections']} correction(s); saved to {path}")
    for lang, result in meta["leave_one_domain_out"].items():
        print(f"  {lang}: reads {meta['readouts'][lang]}; leave-one-domain-out mean {result['mean']:.3f}, worst "
              f"{result['worst']:.3f} ({result['worst_domain']})")
    print("New labels use it from the next start; `rescore` labels stored messages again.")
    if args.json:
        print(json.dumps({"head_id": head.head_id, "path": str(path), **meta}, ensure_ascii=False))
    return 0


def _fit_missing(args: argparse.Namespace, settings: Settings) -> int:
    """What the dashboard's background fit does, in the foreground: every head these weights lack, from the shipped
    sets (resumes a fit that was stopped)."""
    from aio_core.workflows.autofit import missing, run

    engine = _engine(settings)
    todo = missing(engine)
    if not todo:
        print(f"nothing to fit: {engine.labeller}; {engine.risk_reader}")
        return 0
    bars: dict[str, object] = {}

    def progress(status) -> None:
        if status.stage not in bars:
            bars[status.stage] = _progress(status.total, f"fitting the {status.stage} head")
        bars[status.stage].update(status.done - bars[status.stage].n)

    status = run(engine, progress=progress)
    for bar in bars.values():
        bar.close()
    if status.state == "waiting":
        raise UserError("Another process is fitting the heads on this data folder; wait for it (Admin shows its "
                        "progress) or stop it first.")
    if status.state == "failed":
        raise UserError(f"The fit stopped: {status.error}")
    print(f"fitted from the shipped sets: {', '.join(status.finished)} head(s); the next start uses them")
    if args.json:
        print(json.dumps(dataclasses.asdict(status), ensure_ascii=False))
    return 0


def _fit_situation_head(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.situation import read_situation_rows
    from aio_core.workflows.learning import fit_situation_head_from

    total = len(read_situation_rows(args.file))  # checks the files before the model loads
    engine = _engine(settings)
    with _progress(total, "reading") as bar:
        head, path = fit_situation_head_from(args.file, engine=engine, progress=lambda done: bar.update(done - bar.n))
    meta = head.meta
    print(f"fitted situation head {head.head_id} on {meta['rows']} rows from {len(meta['sources'])} sources; "
          f"sure at a top probability of {head.sure_at}; saved to {path}")
    for lang, result in meta["leave_one_source_out"].items():
        print(f"  {lang}: leave-one-source-out top-1 accuracy {result['top1_accuracy']:.3f}; sure on "
              f"{result['sure_share']:.0%} of messages, right on {result['sure_precision']:.1%} of those")
    if args.json:
        print(json.dumps({"head_id": head.head_id, "path": str(path), **meta}, ensure_ascii=False))
    return 0


def _fit_judge(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.backends import Readout
    from aio_core.judge import fit_judge, read_labelled_candidates, save_judge
    from aio_core.prompts import ASSISTANT_VERSION

    if not args.file:
        raise UserError("Give the labelled candidate files: python -m aio_core fit-head --judge LABELLED.jsonl...")
    records = read_labelled_candidates(args.file)  # checks the files before the model loads
    engine = _engine(settings)
    if not engine.backend.reads_hidden_states:
        raise UserError("This backend gives no hidden states, so no reply judge can be fitted or used with it.")
    judge = fit_judge(records, fingerprint=engine.fingerprint, reply_prompt=ASSISTANT_VERSION,
                      readout=Readout(kind="mean", layer=max(1, engine.backend.layers // 2)),
                      meta={"model": engine.name, "files": [str(f) for f in args.file]})
    path = save_judge(judge, settings.heads_dir)
    meta = judge.meta
    oof = meta["out_of_fold"]
    print(f"fitted reply judge {judge.head_id} on {meta['candidates']} labelled sentences ({meta['harmful']} harmful, "
          f"{meta['fine']} acceptable or good); saved to {path}")
    print(f"  out of fold: refuses {oof['harmful_refused']:.0%} of harmful sentences and {oof['fine_refused']:.0%} "
          f"of acceptable or good ones")
    if args.json:
        print(json.dumps({"head_id": judge.head_id, "path": str(path), **meta}, ensure_ascii=False))
    return 0


def _fit_risk_head(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.risk_fit import read_risk_rows, shipped_files
    from aio_core.workflows.learning import fit_risk_head_from

    total = len(read_risk_rows(args.file or shipped_files()))  # checks the files before the model loads
    engine = _engine(settings)
    with _progress(total, "reading") as bar:
        head, path = fit_risk_head_from(args.file, engine=engine, db=_db(settings) if args.with_corrections else None,
                                        progress=lambda done: bar.update(done - bar.n))
    meta = head.meta
    print(f"fitted risk head {head.head_id} on {meta['rows']} rows from {len(meta['sources'])} sources "
          f"+ {meta['reviews']} review(s); saved to {path}")
    for lang in sorted(head.concern_at):
        print(f"  {lang}: concern at log-odds {head.concern_at[lang]:.2f}, urgent at {head.urgent_at[lang]:.2f} "
              f"(false-alarm budgets {meta['budgets']})")
    print("New messages are read with it from the next start (AIO_RISK=auto).")
    if args.json:
        print(json.dumps({"head_id": head.head_id, "path": str(path), **meta}, ensure_ascii=False))
    return 0


@command("correct", "correct a stored message's label (or undo a correction); alerts follow at once",
         arg("id", type=int, help="message id (with --undo: correction id)"),
         arg("label", nargs="?", choices=("positive", "negative"), default=None),
         arg("--by", required=True, help="who corrects (kept in the history)"),
         arg("--note", default=""),
         arg("--undo", action="store_true", default=False))
def _correct(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows.alerts import correct_label, undo_correction

    if not args.undo and args.label is None:
        raise UserError("Give the right label: python -m aio_core correct MESSAGE_ID positive|negative --by NAME.")
    if args.undo:
        done = undo_correction(_db(settings), args.id, by=args.by, rule=_rule(settings))
        print(f"undid correction {done.id} of message {done.message_id}")
    else:
        done = correct_label(_db(settings), args.id, args.label, by=args.by, rule=_rule(settings), note=args.note)
        print(f"message {done.message_id}: {done.from_label} -> {done.to_label} (correction {done.id}); its "
              f"person's alerts were re-evaluated")
    return 0


@command("rescore", "label a batch's or a person's stored messages again (old labels kept as versions)",
         arg("--batch", type=int, default=None),
         arg("--person", default=None),
         arg("--zero-shot", action="store_true", default=False,
             help="every message these weights labelled zero-shot (before their head was fitted)"),
         arg("--by", required=True))
def _rescore(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows.learning import rescore

    if (args.batch is not None) + (args.person is not None) + args.zero_shot != 1:
        raise UserError("Say what to re-score: --batch N, --person HANDLE or --zero-shot (one of them).")
    engine = _engine(settings)
    rows, changed = rescore(engine=engine, db=_db(settings), by=args.by, batch_id=args.batch, handle=args.person,
                            zero_shot=args.zero_shot)
    print(f"re-scored {rows} message(s) with {engine.labeller}: {changed} label(s) changed; the old labels are kept "
          f"as versions and corrections stay in force")
    return 0


def _actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


@command("user", "accounts for the dashboard: add, list, disable, enable, set-role, set-groups, set-password, "
              "set-email",
         arg("action", choices=("add", "list", "disable", "enable", "set-role", "set-groups", "set-password",
                                "set-email")),
         arg("name", nargs="?", default=None),
         arg("--role", default=None, help="admin | counsellor | teacher | moderator | student"),
         arg("--groups", default=None, help="comma-separated groups (classes) the user is responsible for"),
         arg("--person", default=None, help="a student's own handle"),
         arg("--display-name", default=None),
         arg("--password", default=None, help="asked for when not given (keeps it out of shell history)"),
         arg("--email", default=None, help="the account's address: where its notifications go, and what the "
                                           "school's sign-in (OIDC) presents for it; with it and no --password, "
                                           "the account signs in that way only"))
def _user(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from aio_core.workflows.accounts import add_account, change_account
    from db.session import reading
    from db.users import list_users

    db, actor = _db(settings), _actor()
    groups = tuple(g.strip() for g in (args.groups or "").split(",") if g.strip())
    if args.action == "list":
        with reading(db) as session:
            for user, member in list_users(session):
                state = "disabled" if user.disabled else "active"
                print(f"{user.username}\t{user.role}\t{','.join(member) or '-'}\t{user.person_handle or '-'}\t{state}")
        return 0
    if not args.name:
        raise UserError(f"Say which user: python -m aio_core user {args.action} NAME.")
    if args.action == "add":
        if not args.role:
            raise UserError("Give the new user a role: --role admin|counsellor|teacher|moderator|student.")
        password = None if args.email and not args.password else (
            args.password or getpass.getpass(f"password for {args.name}: "))
        add_account(db, args.name, password, role=args.role, by=actor, display_name=args.display_name or "",
                    groups=groups, person=args.person, email=args.email)
    elif args.action in ("disable", "enable"):
        change_account(db, args.name, by=actor, disabled=args.action == "disable")
    elif args.action == "set-role":
        change_account(db, args.name, by=actor, role=args.role or "")
    elif args.action == "set-groups":
        change_account(db, args.name, by=actor, groups=groups)
    elif args.action == "set-email":
        change_account(db, args.name, by=actor, email=args.email, clear_email=args.email is None)
    elif args.action == "set-password":
        change_account(db, args.name, by=actor,
                       password=args.password or getpass.getpass(f"new password for {args.name}: "))
    print(f"user {args.action}: {args.name} done")
    return 0


@command("audit", "the audit log as CSV (newest first)",
         arg("--limit", type=int, default=10000),
         arg("--action", default=None, help="only this action, e.g. signin.failed"))
def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows.exports import audit_export, record_download

    db = _db(settings)
    export = audit_export(db, limit=args.limit, action=args.action)
    record_download(db, _actor(), export)
    sys.stdout.buffer.write(export.data)
    return 0


@command("bench", "speed and memory, with the seed article's method as baseline in the same run",
         arg("--json", action="store_true", default=False, help="print the figures as JSON, last line"),
         arg("--quick", action="store_true", default=False, help="about a minute instead of five"),
         arg("--phase", choices=("engine", "seed"), default=None, help=argparse.SUPPRESS))
def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.backends.loading import RANDOM_SHAPE
    from aio_core.measure.bench import PHASES, format_bench, run_bench

    if args.phase:  # a child process of run_bench
        print(json.dumps(PHASES[args.phase](settings, quick=args.quick)))
        return 0
    if not getattr(args, "model", None):  # bench measures the real shape unless told which model
        settings = settings.replace(model=RANDOM_SHAPE)
    result = run_bench(settings, quick=args.quick, log=lambda line: print(line, file=sys.stderr))
    print(format_bench(result))
    if args.json:
        print(json.dumps(result))
    return 0


@command("label-pending", "label the messages stored while no model was available")
def _label_pending(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows.conversation import label_pending

    count = label_pending(engine=_engine(settings), db=_db(settings), rule=_rule(settings))
    print(f"labelled {count} message(s) that were stored while no model was available")
    return 0


@command("export-person", "print everything stored about one person as JSON (privacy request)",
         arg("handle"))
def _export(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows.exports import record_download
    from aio_core.workflows.privacy import person_export

    db = _db(settings)
    export = person_export(db, args.handle)
    if export is None:
        raise UserError(f"Nobody with the handle {args.handle!r} is stored.")
    record_download(db, _actor(), export)
    print(export.data.decode("utf-8"))
    return 0


@command("erase-person", "delete one person, their messages and alerts (privacy request)",
         arg("handle"))
def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows.privacy import erase

    deleted = erase(_db(settings), args.handle, by=_actor())
    if deleted is None:
        raise UserError(f"Nobody with the handle {args.handle!r} is stored.")
    print(f"erased {args.handle}: " + ", ".join(f"{n} {what}" for what, n in deleted.items()))
    return 0


@command("demo", "fill an empty store with a simulated class (clearly marked) so every page has data",
         arg("--people", type=int, default=12),
         arg("--weeks", type=int, default=6),
         arg("--seed", type=int, default=7))
def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from aio_core.workflows.demo import fill_demo

    print(fill_demo(_db(settings), rule=_rule(settings), people=args.people, weeks=args.weeks, seed=args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS everywhere: a flag given before the subcommand must not be reset by the subcommand's copy of it.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--model", help="hub id, model folder, .gguf file or tiny-random (AIO_MODEL)")
    common.add_argument("--device", choices=DEVICES, help="AIO_DEVICE")
    common.add_argument("--dtype", choices=DTYPES, help="AIO_DTYPE")
    common.add_argument("--threads", type=int, help="CPU threads, 0 = all (AIO_THREADS)")
    common.add_argument("--db", dest="db_url", help="SQLAlchemy database URL (AIO_DB_URL)")
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens, with tracebacks")
    parser = argparse.ArgumentParser(prog="python -m aio_core", parents=[common],
                                     description="One small Qwen model as a sentiment analyst and a warm assistant.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, declared in COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=declared.help, description=declared.help,
                           argument_default=argparse.SUPPRESS)
        for names, options in declared.arguments:
            p.add_argument(*names, **options)
    return parser


def _report_write_holds() -> None:
    from db.session import WriteHolds

    print("write-holds " + json.dumps({"longest": WriteHolds.longest, "count": WriteHolds.count,
                                       "mean": WriteHolds.total / max(WriteHolds.count, 1)}), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from aio_core.workflows import USER_ERRORS

    if os.environ.get("AIO_REPORT_WRITE_HOLDS"):  # for the load test: how long this process held the write lock
        atexit.register(_report_write_holds)
    try:
        settings = Settings.from_env(model=getattr(args, "model", None), device=getattr(args, "device", None),
                                     dtype=getattr(args, "dtype", None), threads=getattr(args, "threads", None),
                                     db_url=getattr(args, "db_url", None),
                                     batch_size=getattr(args, "batch_size", None))
        return COMMANDS[args.command].handler(args, settings)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; what was committed is kept, and running the same command again resumes",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
