"""The learned risk head: is someone in danger, read from the hidden state the sentiment pass already computes.

Like the label head (`heads.py`), it is a set of small probes on one hidden state of the same forward pass (plus the
zero-shot sentiment log-odds), so it costs a few small matrix products and no second pass. It is tied to the weights
it was fitted on and to the prompt whose pass it reads: `<fingerprint>__<prompt>__risk.safetensors` with a JSON
sidecar (training files, sources, thresholds and how they were chosen, leave-one-source-out figures).

Three readings of the same features:
- any risk (concern or urgent) against none, thresholded at `concern_at` (a probe with one small hidden layer);
- urgent against everything else, thresholded at `urgent_at` (the same kind of probe);
- the category of a risk (self-harm, harm-to-others, abuse, bullying), a multinomial regression on risk rows only.
Each threshold is chosen per language by a stated false-alarm budget on texts the head was not fitted on
(`BUDGETS`), from out-of-fold scores: each source of the training rows is scored by a head fitted without it.
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
    load_probes,
    probe_file,
    readout_from,
    readout_metadata,
    save_probes,
    weighted_quantile,
)

CATEGORIES = ("self-harm", "harm-to-others", "abuse", "bullying")
# False-alarm budgets, per level, on rows nobody fitted on: (ordinary texts, hard look-alikes). Urgent goes to a
# counsellor at once and to the safe-message chat, so it may cost at most 1 in 100 ordinary messages and 5 in 100
# look-alikes; concern goes to a review queue, never to a safe-message-only chat, so it may be looser.
BUDGETS = {"urgent": (0.01, 0.05), "concern": (0.03, 0.08)}


@dataclass(frozen=True)
class RiskReading:
    level: str  # none | concern | urgent
    category: str | None
    p_risk: float  # the head's probability of any risk


@dataclass(frozen=True)
class RiskHead:
    fingerprint: str
    prompt_version: str  # the sentiment prompt whose forward pass it reads
    readout: Readout
    any_risk: Probe
    urgent: Probe
    category: Probe  # columns in CATEGORIES order
    concern_at: dict[str, float]  # log-odds thresholds per language, chosen by BUDGETS
    urgent_at: dict[str, float]
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def head_id(self) -> str:
        """Names this exact head; stored with every assessment it took part in, so an alert can be reproduced."""
        digest = hashlib.sha256(f"{self.readout.kind}:{self.readout.layer}:{sorted(self.concern_at.items())}:"
                                f"{sorted(self.urgent_at.items())}".encode())
        for probe in (self.any_risk, self.urgent, self.category):
            for array in (probe.mean, probe.scale, *(a for layer in probe.layers for a in layer)):
                digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        return f"{self.fingerprint}__{self.prompt_version}__risk__{digest.hexdigest()[:10]}"

    def scores(self, hidden: np.ndarray, zero_shot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(any-risk log-odds, urgent log-odds, category scores [rows, 4]) for `hidden` [rows, size] read at
        `readout`, and the zero-shot sentiment log-odds [rows]."""
        features = features_of(hidden, zero_shot)
        return self.any_risk(features), self.urgent(features), self.category(features)

    def cut(self, level: str, lang: str) -> float:
        """The level's threshold for a text in `lang` (the strictest one for a language it has none for)."""
        found = self.urgent_at if level == "urgent" else self.concern_at
        return found.get(lang, max(found.values()))

    def read(self, hidden: np.ndarray, zero_shot: np.ndarray, langs: Sequence[str]) -> list[RiskReading]:
        any_risk, urgent, category = self.scores(hidden, zero_shot)
        p_risk = 0.5 * (1.0 + np.tanh(0.5 * any_risk))
        found = []
        for i, lang in enumerate(langs):
            level = ("urgent" if urgent[i] >= self.cut("urgent", lang) else
                     "concern" if any_risk[i] >= self.cut("concern", lang) else "none")
            found.append(RiskReading(level=level, category=CATEGORIES[int(np.argmax(category[i]))]
                                     if level != "none" else None, p_risk=float(p_risk[i])))
        return found


def threshold(scores: np.ndarray, weights: np.ndarray, ordinary: np.ndarray, lookalike: np.ndarray,
              level: str) -> float:
    """The lowest log-odds threshold that keeps the level's false alarms within its budget on both kinds of
    non-risk text (`ordinary`, `lookalike`: boolean masks over held-out `scores`; each row counts by its weight, so
    every source counts alike)."""
    budget_ordinary, budget_lookalike = BUDGETS[level]
    bounds = [weighted_quantile(scores[mask], weights[mask], 1.0 - budget)
              for mask, budget in ((ordinary, budget_ordinary), (lookalike, budget_lookalike)) if mask.any()]
    if not bounds:
        raise UserError("Choosing a risk threshold needs non-risk rows (kind ordinary or lookalike).")
    return float(max(bounds))


def head_path(folder: Path, fingerprint: str, prompt_version: str) -> Path:
    return probe_file(folder, fingerprint, prompt_version, "risk")


def save_risk_head(head: RiskHead, folder: Path) -> Path:
    """Write the head and its sidecar atomically (a reader never sees half a file)."""
    path = head_path(folder, head.fingerprint, head.prompt_version)
    metadata = {"fingerprint": head.fingerprint, "prompt_version": head.prompt_version, "kind": "risk",
                "readout": readout_metadata(head.readout),
                "thresholds": json.dumps({"concern_at": head.concern_at, "urgent_at": head.urgent_at}),
                "categories": json.dumps(CATEGORIES)}
    save_probes(path, {"any_risk": head.any_risk, "urgent": head.urgent, "category": head.category}, metadata,
                {**head.meta, "head_id": head.head_id})
    return path


def load_risk_head(path: Path) -> RiskHead:
    try:
        probes, metadata, info = load_probes(path)
        if json.loads(metadata["categories"]) != list(CATEGORIES):
            raise ValueError("its categories are not this program's")
        thresholds = json.loads(metadata["thresholds"])
        return RiskHead(fingerprint=metadata["fingerprint"], prompt_version=metadata["prompt_version"],
                        readout=readout_from(metadata),
                        any_risk=probes["any_risk"], urgent=probes["urgent"], category=probes["category"],
                        concern_at={k: float(v) for k, v in thresholds["concern_at"].items()},
                        urgent_at={k: float(v) for k, v in thresholds["urgent_at"].items()}, meta=info)
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"The risk head {path} cannot be read ({exc}); delete it or fit it again with "
                        "python -m aio_core fit-head --risk.") from None


def find_risk_head(folder: Path, fingerprint: str, prompt_version: str) -> RiskHead | None:
    """The risk head fitted on exactly these weights and this prompt's pass, or None."""
    return find_fitted(head_path(folder, fingerprint, prompt_version), load_risk_head,
                       lambda head: (head.fingerprint, head.prompt_version), (fingerprint, prompt_version))


def category_index(categories: Sequence[str | None]) -> np.ndarray:
    return np.array([CATEGORIES.index(c) for c in categories])
