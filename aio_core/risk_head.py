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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aio_core.backends import Readout
from aio_core.errors import UserError
from aio_core.heads import features_of

CATEGORIES = ("self-harm", "harm-to-others", "abuse", "bullying")
STRENGTH = 0.01  # inverse regularisation C, chosen leave-one-source-out (0.003-0.1 tried; README, Risk)
# False-alarm budgets, per level, on rows nobody fitted on: (ordinary texts, hard look-alikes). Urgent goes to a
# counsellor at once and to the safe-message chat, so it may cost at most 1 in 100 ordinary messages and 5 in 100
# look-alikes; concern goes to a review queue, never to a safe-message-only chat, so it may be looser.
BUDGETS = {"urgent": (0.01, 0.05), "concern": (0.03, 0.08)}


@dataclass(frozen=True)
class Probe:
    """A small network on standardised features: (features - mean) / scale, then each hidden layer (ReLU), then the
    output layer; one output column is squeezed to a vector (log-odds), several stay a matrix."""

    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weights [in, out], bias [out]), the last one the output

    def __call__(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        for weights, bias in self.layers[:-1]:
            z = np.maximum(z @ weights + bias, 0.0)
        weights, bias = self.layers[-1]
        out = z @ weights + bias
        return out[:, 0] if out.shape[1] == 1 else out


HIDDEN, ALPHA = 64, 3.0  # the any-risk and urgent probes: one ReLU layer, L2 penalty (README, Risk)


def _standardise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), features.std(axis=0) + 1e-6


def fit_network(features: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> Probe:
    """A binary probe with one hidden layer (scikit-learn's MLPClassifier, L-BFGS, fixed seed: deterministic for the
    same inputs); its output is the log-odds of the larger target value. Leave-one-source-out it caught 4-7 points
    more risk than a logistic regression at the same false-alarm rate on look-alikes (README, Risk)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    mean, scale = _standardise(features)
    weights = np.ones(len(target)) if weights is None else np.asarray(weights, dtype=np.float64)
    model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), alpha=ALPHA, solver="lbfgs", max_iter=200, random_state=0)
    with warnings.catch_warnings():  # 200 L-BFGS steps is the measured choice (400 gave the same probe)
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((features - mean) / scale, target, sample_weight=weights / weights.mean())
    layers = tuple((w.astype(np.float64), b.astype(np.float64)) for w, b in zip(model.coefs_, model.intercepts_,
                                                                                 strict=True))
    return Probe(mean, scale, layers)


def fit_linear(features: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None,
               strength: float = STRENGTH) -> Probe:
    """An L2-regularised logistic regression (scikit-learn's lbfgs) on standardised features: binary when `target`
    holds two values (the output is the log-odds of the larger one), multinomial otherwise (log-probabilities up to
    a constant, columns in sorted class order)."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = _standardise(features)
    model = LogisticRegression(C=strength, max_iter=3000)
    model.fit((features - mean) / scale, target, sample_weight=weights)
    return Probe(mean, scale, ((model.coef_.T.astype(np.float64), model.intercept_.astype(np.float64)),))


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


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The value below which a share `q` of the total weight lies."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][min(np.searchsorted(cumulative, q * cumulative[-1]), len(values) - 1)])


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
    return Path(folder) / f"{fingerprint}__{prompt_version}__risk.safetensors"


def save_risk_head(head: RiskHead, folder: Path) -> Path:
    """Write the head and its sidecar atomically (a reader never sees half a file)."""
    from safetensors.numpy import save_file

    path = head_path(folder, head.fingerprint, head.prompt_version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name in ("any_risk", "urgent", "category"):
        probe: Probe = getattr(head, name)
        tensors |= {f"{name}.mean": probe.mean, f"{name}.scale": probe.scale}
        for i, (weights, bias) in enumerate(probe.layers):
            tensors |= {f"{name}.w{i}": weights, f"{name}.b{i}": bias}
    meta = {"fingerprint": head.fingerprint, "prompt_version": head.prompt_version, "kind": "risk",
            "readout": json.dumps({"kind": head.readout.kind, "layer": head.readout.layer}),
            "thresholds": json.dumps({"concern_at": head.concern_at, "urgent_at": head.urgent_at}),
            "categories": json.dumps(CATEGORIES)}
    partial = path.with_suffix(".part")
    save_file(tensors, str(partial), metadata=meta)
    sidecar = path.with_suffix(".json")
    sidecar.with_suffix(".json.part").write_text(json.dumps({**head.meta, "head_id": head.head_id}, indent=2,
                                                            ensure_ascii=False))
    partial.replace(path)
    sidecar.with_suffix(".json.part").replace(sidecar)
    return path


def load_risk_head(path: Path) -> RiskHead:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        if json.loads(meta["categories"]) != list(CATEGORIES):
            raise ValueError("its categories are not this program's")
        sidecar = path.with_suffix(".json")
        info = json.loads(sidecar.read_text()) if sidecar.exists() else {}

        def probe(name: str) -> Probe:
            depth = sum(1 for key in tensors if key.startswith(f"{name}.w"))
            return Probe(tensors[f"{name}.mean"], tensors[f"{name}.scale"],
                         tuple((tensors[f"{name}.w{i}"], tensors[f"{name}.b{i}"]) for i in range(depth)))

        readout, thresholds = json.loads(meta["readout"]), json.loads(meta["thresholds"])
        return RiskHead(fingerprint=meta["fingerprint"], prompt_version=meta["prompt_version"],
                        readout=Readout(kind=readout["kind"], layer=int(readout["layer"])),
                        any_risk=probe("any_risk"), urgent=probe("urgent"), category=probe("category"),
                        concern_at={k: float(v) for k, v in thresholds["concern_at"].items()},
                        urgent_at={k: float(v) for k, v in thresholds["urgent_at"].items()}, meta=info)
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"The risk head {path} cannot be read ({exc}); delete it or fit it again with "
                        "python -m aio_core fit-head --risk.") from None


def find_risk_head(folder: Path, fingerprint: str, prompt_version: str) -> RiskHead | None:
    """The risk head fitted on exactly these weights and this prompt's pass, or None. A file whose recorded
    fingerprint or prompt differs from its name (copied by hand) is never applied."""
    path = head_path(folder, fingerprint, prompt_version)
    if not path.is_file():
        return None
    head = load_risk_head(path)
    if (head.fingerprint, head.prompt_version) != (fingerprint, prompt_version):
        return None
    return head


def category_index(categories: Sequence[str | None]) -> np.ndarray:
    return np.array([CATEGORIES.index(c) for c in categories])
