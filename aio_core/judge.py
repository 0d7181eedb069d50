"""The reply judge: would a counsellor sign this sentence? Read from the hidden states of the sentence's own tokens,
which the model computed while writing it (after the conversation), so judging costs no forward pass of its own.

Two probes on the mean of those hidden states at one layer: harmful (blames, insults, celebrates a loss, misleads)
against everything else, and fine (acceptable or good) against not. A candidate is refused when p(harmful) is above
`harmful_at` or p(fine) below `fine_at`, thresholds chosen on held-out conversations so that no harmful reply of the
labelled set passes (README, Replies). Tied to the weights and to the assistant prompt's version like every head:
`<fingerprint>__<reply prompt>__judge.safetensors`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aio_core.backends import Readout
from aio_core.errors import UserError
from aio_core.jsonlines import json_lines
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

RUBRIC = ("harmful", "not sensible", "acceptable", "good")


@dataclass(frozen=True)
class Judgement:
    p_harmful: float
    p_fine: float
    refused: bool


@dataclass(frozen=True)
class ReplyJudge:
    fingerprint: str
    reply_prompt: str  # the assistant prompt's version whose pass it reads
    readout: Readout  # a "mean" readout: the mean over the candidate's tokens at this layer
    harmful: Probe
    fine: Probe
    harmful_at: float  # probabilities
    fine_at: float
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def head_id(self) -> str:
        digest = hashlib.sha256(f"{self.readout.layer}:{self.harmful_at}:{self.fine_at}".encode())
        for probe in (self.harmful, self.fine):
            for array in (probe.mean, probe.scale, *(a for layer in probe.layers for a in layer)):
                digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        return f"{self.fingerprint}__{self.reply_prompt}__judge__{digest.hexdigest()[:10]}"

    def judge(self, hidden: np.ndarray) -> list[Judgement]:
        """One Judgement per row of `hidden` [rows, size]."""
        p_harmful = 1.0 / (1.0 + np.exp(-self.harmful(hidden)))
        p_fine = 1.0 / (1.0 + np.exp(-self.fine(hidden)))
        return [Judgement(float(h), float(f), bool(h > self.harmful_at or f < self.fine_at))
                for h, f in zip(p_harmful, p_fine, strict=True)]


def head_path(folder: Path, fingerprint: str, reply_prompt: str) -> Path:
    return probe_file(folder, fingerprint, reply_prompt, "judge")


def save_judge(judge: ReplyJudge, folder: Path) -> Path:
    path = head_path(folder, judge.fingerprint, judge.reply_prompt)
    save_probes(path, {"harmful": judge.harmful, "fine": judge.fine},
                {"fingerprint": judge.fingerprint, "reply_prompt": judge.reply_prompt, "kind": "judge",
                 "readout": readout_metadata(judge.readout),
                 "thresholds": json.dumps({"harmful_at": judge.harmful_at, "fine_at": judge.fine_at})},
                {**judge.meta, "head_id": judge.head_id})
    return path


def load_judge(path: Path) -> ReplyJudge:
    try:
        probes, metadata, info = load_probes(path)
        thresholds = json.loads(metadata["thresholds"])
        return ReplyJudge(fingerprint=metadata["fingerprint"], reply_prompt=metadata["reply_prompt"],
                          readout=readout_from(metadata),
                          harmful=probes["harmful"], fine=probes["fine"],
                          harmful_at=float(thresholds["harmful_at"]), fine_at=float(thresholds["fine_at"]), meta=info)
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"The reply judge {path} cannot be read ({exc}); delete it or fit it again with "
                        "python -m aio_core fit-head --judge.") from None


def find_judge(folder: Path, fingerprint: str, reply_prompt: str) -> ReplyJudge | None:
    """The judge fitted on exactly these weights and this assistant prompt, or None."""
    return find_fitted(head_path(folder, fingerprint, reply_prompt), load_judge,
                       lambda judge: (judge.fingerprint, judge.reply_prompt), (fingerprint, reply_prompt))


def read_labelled_candidates(paths) -> list[dict]:
    """Candidate sentences people labelled: JSON Lines with "text", "lang", "source", "state" (the hidden-state
    mean `eval-replies --keep-states` kept), "fingerprint", "failed" (the checks it failed) and "rubric"."""
    found = []
    for path in paths:
        for number, record in json_lines(path, "a labelled candidate from eval-replies --keep-states"):
            try:
                ok = record["rubric"] in RUBRIC and isinstance(record["state"], list) and record["fingerprint"]
            except (KeyError, TypeError):
                ok = False
            if not ok:
                raise UserError(f"{path}, line {number}: each line needs \"rubric\" ({' / '.join(RUBRIC)}), "
                                "\"state\" and \"fingerprint\" (from eval-replies --keep-states).")
            found.append(record)
    if not found:
        raise UserError("No labelled candidates were given.")
    return found


def fit_judge(records: list[dict], *, fingerprint: str, reply_prompt: str, readout: Readout,
              meta: dict | None = None) -> ReplyJudge:
    """Two logistic regressions on the candidates' hidden states; `harmful_at` chosen out of fold (each source read
    by probes fitted on the others) as the highest threshold under which every harmful candidate that the checks
    let through is refused, and `fine_at` as the lowest p(fine) of an acceptable-or-good candidate's out-of-fold
    score at its 10th percentile (so the judge refuses at most about a tenth of good sentences for being unclear)."""
    other = sorted({r["fingerprint"] for r in records} - {fingerprint})
    if other:
        raise UserError(f"Some labelled candidates were read by other weights ({', '.join(other)}); a judge reads "
                        "only the hidden states of the weights it is fitted for. Make them again with these weights.")
    states = np.array([r["state"] for r in records], dtype=np.float64)
    harmful = np.array([r["rubric"] == "harmful" for r in records])
    fine = np.array([r["rubric"] in ("acceptable", "good") for r in records])
    if harmful.sum() < 5 or fine.sum() < 5 or (~fine).sum() < 5:
        raise UserError("The labelled candidates need at least 5 harmful, 5 acceptable-or-good and 5 other "
                        "sentences to fit a judge.")
    sources = np.array([r.get("source") or "?" for r in records])
    passed = np.array([not r.get("failed") for r in records])
    oof_harm, oof_fine = np.zeros(len(records)), np.zeros(len(records))
    for source in sorted(set(sources)):
        held = sources == source
        if len(set(harmful[~held].tolist())) < 2 or len(set(fine[~held].tolist())) < 2:
            raise UserError(f"Without the source {source!r} the rest has no harmful or no fine sentence; label "
                            "sentences from more sources.")
        oof_harm[held] = 1 / (1 + np.exp(-fit_linear(states[~held], harmful[~held])(states[held])))
        oof_fine[held] = 1 / (1 + np.exp(-fit_linear(states[~held], fine[~held])(states[held])))
    slipped = oof_harm[harmful & passed]
    harmful_at = float(slipped.min()) - 1e-6 if len(slipped) else 0.5
    fine_at = float(np.quantile(oof_fine[fine], 0.10))
    refused = (oof_harm > harmful_at) | (oof_fine < fine_at)
    report = {"candidates": len(records), "harmful": int(harmful.sum()), "fine": int(fine.sum()),
              "harmful_passing_checks": int((harmful & passed).sum()),
              "out_of_fold": {"harmful_refused": float(refused[harmful].mean()),
                              "harmful_passing_checks_refused": float(refused[harmful & passed].mean())
                              if (harmful & passed).any() else None,
                              "fine_refused": float(refused[fine].mean()),
                              "fine_passing_checks_refused": float(refused[fine & passed].mean())
                              if (fine & passed).any() else None}}
    return ReplyJudge(fingerprint=fingerprint, reply_prompt=reply_prompt, readout=readout,
                      harmful=fit_linear(states, harmful), fine=fit_linear(states, fine), harmful_at=harmful_at,
                      fine_at=fine_at, meta={**(meta or {}), **report})
