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
from aio_core.probes import Probe, load_probes, save_probes

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
    return Path(folder) / f"{fingerprint}__{reply_prompt}__judge.safetensors"


def save_judge(judge: ReplyJudge, folder: Path) -> Path:
    path = head_path(folder, judge.fingerprint, judge.reply_prompt)
    save_probes(path, {"harmful": judge.harmful, "fine": judge.fine},
                {"fingerprint": judge.fingerprint, "reply_prompt": judge.reply_prompt, "kind": "judge",
                 "readout": json.dumps({"kind": judge.readout.kind, "layer": judge.readout.layer}),
                 "thresholds": json.dumps({"harmful_at": judge.harmful_at, "fine_at": judge.fine_at})},
                {**judge.meta, "head_id": judge.head_id})
    return path


def load_judge(path: Path) -> ReplyJudge:
    try:
        probes, metadata, info = load_probes(path)
        readout, thresholds = json.loads(metadata["readout"]), json.loads(metadata["thresholds"])
        return ReplyJudge(fingerprint=metadata["fingerprint"], reply_prompt=metadata["reply_prompt"],
                          readout=Readout(kind=readout["kind"], layer=int(readout["layer"])),
                          harmful=probes["harmful"], fine=probes["fine"],
                          harmful_at=float(thresholds["harmful_at"]), fine_at=float(thresholds["fine_at"]), meta=info)
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"The reply judge {path} cannot be read ({exc}); delete it or fit it again with "
                        "python -m aio_core fit-head --judge.") from None


def find_judge(folder: Path, fingerprint: str, reply_prompt: str) -> ReplyJudge | None:
    """The judge fitted on exactly these weights and this assistant prompt, or None."""
    path = head_path(folder, fingerprint, reply_prompt)
    if not path.is_file():
        return None
    judge = load_judge(path)
    return judge if (judge.fingerprint, judge.reply_prompt) == (fingerprint, reply_prompt) else None
