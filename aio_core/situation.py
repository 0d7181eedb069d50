"""What a student's message is about (a bad mark, loneliness, a fight at home, good news...), read by the model from
the same forward pass as its sentiment and risk, so the reply can start with the reviewed words for that situation.

The situation head is a multinomial regression on the hidden state every head reads (`risk_fit.risk_readout`: the
mean over the text at half the depth), tied to the weights and the prompt like the other heads:
`<fingerprint>__<prompt>__situation.safetensors`. It says "unsure" when its top probability is under `sure_at`
(chosen on held-out sources) or when the situation's tone contradicts the message's sentiment (a "proud" reading of a
message the label head reads as surely negative): a wrong cheerful opening hurts more than a general one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aio_core.backends import Readout
from aio_core.errors import UserError
from aio_core.heads import features_of
from aio_core.probes import (
    Probe,
    find_fitted,
    fit_linear,
    load_probes,
    probe_file,
    readout_from,
    readout_metadata,
    save_probes,
)

SITUATIONS = ("bad_mark", "exam_stress", "lonely", "home_conflict", "angry_at_someone", "sad_loss", "worried", "tired",
              "proud", "good_news", "bored", "question", "small_talk")
UNSURE = "unsure"
UNSURE_POSITIVE, UNSURE_NEGATIVE = "unsure_positive", "unsure_negative"  # unsure of the topic, sure of the tone
POSITIVE = frozenset({"proud", "good_news"})  # never read for a message that is surely negative
NEGATIVE = frozenset({"bad_mark", "exam_stress", "lonely", "home_conflict", "angry_at_someone", "sad_loss", "worried",
                      "tired"})  # never read for a message that is surely positive
SURELY = 0.85  # a sentiment at least this confident decides the tone
PRECISION = 0.90  # sure_at is the least top probability whose sure readings were right this often, out of fold
SHIPPED = Path(__file__).resolve().parent / "data" / "situations"


@dataclass(frozen=True)
class SituationHead:
    fingerprint: str
    prompt_version: str
    readout: Readout
    probe: Probe  # columns in SITUATIONS order
    sure_at: float  # the least top probability that is trusted; below it the reading is "unsure"
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def head_id(self) -> str:
        digest = hashlib.sha256(f"{self.readout.kind}:{self.readout.layer}:{self.sure_at}".encode())
        for array in (self.probe.mean, self.probe.scale, *(a for layer in self.probe.layers for a in layer)):
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        return f"{self.fingerprint}__{self.prompt_version}__situation__{digest.hexdigest()[:10]}"

    def probabilities(self, hidden: np.ndarray, zero_shot: np.ndarray) -> np.ndarray:
        """[rows, situations], each row summing to 1."""
        scores = self.probe(features_of(hidden, zero_shot))
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def read(self, hidden: np.ndarray, zero_shot: np.ndarray, p_negative: Sequence[float]) -> list[str]:
        return [decide(row, p, self.sure_at) for row, p in zip(self.probabilities(hidden, zero_shot), p_negative,
                                                             strict=True)]


def decide(probabilities: np.ndarray, p_negative: float, sure_at: float) -> str:
    """The situation a reply may assume: the most probable one if it is sure enough and its tone does not contradict
    the sentiment, else "unsure". A glad situation needs a message that reads positive at all (a "proud" opening to
    a humiliation hurt a student in the dev set); a message that surely reads negative gets only a hard situation
    ("bored" for friends who stopped talking to her dismissed it); a surely positive one never gets a hard one."""
    best = SITUATIONS[int(np.argmax(probabilities))]
    if float(np.max(probabilities)) < sure_at:
        return UNSURE
    if (best in POSITIVE and p_negative >= 0.5) or (best not in NEGATIVE and p_negative >= SURELY) or (
            best in NEGATIVE and p_negative <= 1 - SURELY):
        return UNSURE
    return best


def head_path(folder: Path, fingerprint: str, prompt_version: str) -> Path:
    return probe_file(folder, fingerprint, prompt_version, "situation")


def save_situation_head(head: SituationHead, folder: Path) -> Path:
    path = head_path(folder, head.fingerprint, head.prompt_version)
    save_probes(path, {"situation": head.probe},
                {"fingerprint": head.fingerprint, "prompt_version": head.prompt_version, "kind": "situation",
                 "readout": readout_metadata(head.readout),
                 "sure_at": json.dumps(head.sure_at), "situations": json.dumps(SITUATIONS)},
                {**head.meta, "head_id": head.head_id})
    return path


def load_situation_head(path: Path) -> SituationHead:
    try:
        probes, metadata, info = load_probes(path)
        if json.loads(metadata["situations"]) != list(SITUATIONS):
            raise ValueError("its situations are not this program's")
        return SituationHead(fingerprint=metadata["fingerprint"], prompt_version=metadata["prompt_version"],
                             readout=readout_from(metadata),
                             probe=probes["situation"], sure_at=float(json.loads(metadata["sure_at"])), meta=info)
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"The situation head {path} cannot be read ({exc}); delete it or fit it again with "
                        "python -m aio_core fit-head --situation.") from None


def find_situation_head(folder: Path, fingerprint: str, prompt_version: str) -> SituationHead | None:
    """The situation head fitted on exactly these weights and this prompt's pass, or None."""
    return find_fitted(head_path(folder, fingerprint, prompt_version), load_situation_head,
                       lambda head: (head.fingerprint, head.prompt_version), (fingerprint, prompt_version))


@dataclass(frozen=True)
class SituationRow:
    text: str
    situation: str
    lang: str
    source: str


def read_situation_rows(paths: Sequence[Path | str] = ()) -> list[SituationRow]:
    """Rows of situation CSVs (`text,lang,situation,source`; the shipped set when `paths` is empty)."""
    import csv

    rows = []
    for path in [Path(p) for p in paths] or sorted(SHIPPED.glob("*.csv")):
        try:
            with path.open(encoding="utf-8", newline="") as handle:
                for number, raw in enumerate(csv.DictReader(handle), 2):
                    if raw.get("situation") not in SITUATIONS or raw.get("lang") not in ("en", "zh") or not (
                            raw.get("text") or "").strip():
                        raise UserError(f"{path.name}, line {number}: a situation row needs text, lang (en|zh) and "
                                        f"a situation among {', '.join(SITUATIONS)}.")
                    rows.append(SituationRow(raw["text"], raw["situation"], raw["lang"], raw.get("source") or
                                             path.stem))
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} cannot be read as a UTF-8 CSV ({exc}).") from None
    return rows


def _probabilities(probe: Probe, features: np.ndarray) -> np.ndarray:
    scores = probe(features)
    scores = scores - scores.max(axis=1, keepdims=True)
    return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


def fit_situation_head(rows: Sequence[SituationRow], hidden: np.ndarray, zero_shot: np.ndarray, *, readout: Readout,
                       fingerprint: str, prompt_version: str, meta: dict | None = None) -> SituationHead:
    """A multinomial regression on every row, and `sure_at` chosen out of fold: each source read by a probe fitted
    on the others, the least top probability (0.30-0.95) whose sure readings, after the tone rule of `decide`, were
    right at least PRECISION of the time in each language. The out-of-fold figures go in the sidecar."""
    features = features_of(hidden, zero_shot)
    target = np.array([SITUATIONS.index(r.situation) for r in rows])
    if set(target.tolist()) != set(range(len(SITUATIONS))):
        missing = sorted(set(SITUATIONS) - {r.situation for r in rows})
        raise UserError(f"The situation rows have no example of {', '.join(missing)}; every situation needs some.")
    sources = np.array([r.source for r in rows])
    langs = np.array([r.lang for r in rows])
    p_negative = 1.0 / (1.0 + np.exp(-np.asarray(zero_shot, dtype=np.float64)))
    out = np.zeros((len(rows), len(SITUATIONS)))
    for source in sorted(set(sources)):
        held = sources == source
        if len(set(target[~held].tolist())) < len(SITUATIONS):
            raise UserError(f"Without the source {source!r} some situation has no example; every situation needs "
                            "rows from at least two sources.")
        out[held] = _probabilities(fit_linear(features[~held], target[~held]), features[held])
    report: dict[str, dict] = {}
    sure_at = 0.95
    for threshold in np.arange(0.30, 0.951, 0.05):
        said = [decide(p, n, float(threshold)) for p, n in zip(out, p_negative, strict=True)]
        ok = True
        for lang in ("en", "zh"):
            mine = [(s, r.situation) for s, r, where in zip(said, rows, langs, strict=True)
                    if where == lang and s != UNSURE]
            if mine and sum(a == b for a, b in mine) / len(mine) < PRECISION:
                ok = False
        if ok:
            sure_at = round(float(threshold), 2)
            break
    said = [decide(p, n, sure_at) for p, n in zip(out, p_negative, strict=True)]
    for lang in ("en", "zh"):
        pairs = [(s, r.situation) for s, r in zip(said, rows, strict=True) if r.lang == lang]
        sure = [(a, b) for a, b in pairs if a != UNSURE]
        report[lang] = {"rows": len(pairs), "top1_accuracy": round(float(np.mean(
                            [SITUATIONS[int(np.argmax(p))] == r.situation for p, r in zip(out, rows, strict=True)
                             if r.lang == lang])), 3),
                        "sure_share": round(len(sure) / max(1, len(pairs)), 3),
                        "sure_precision": round(sum(a == b for a, b in sure) / max(1, len(sure)), 3)}
    probe = fit_linear(features, target)
    return SituationHead(fingerprint=fingerprint, prompt_version=prompt_version, readout=readout, probe=probe,
                         sure_at=sure_at, meta={**(meta or {}), "sure_at": sure_at,
                                                "leave_one_source_out": report})
