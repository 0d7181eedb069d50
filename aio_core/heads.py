"""A learned label head: logistic regression over the answer position's hidden state plus the zero-shot log-odds.

Still one model and one forward pass: the classifier already runs the model to the answer position, so reading its
hidden state costs nothing, and the head is one dot product (a few thousand floats). A head is tied to the weights
it was fitted on and to the prompt whose answer position it reads: its file is named
`<model fingerprint>__<prompt version>.safetensors` with a JSON sidecar (training files and their sha256, rows per
domain, leave-one-domain-out accuracy, date), and the engine applies it only when both match.
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


@dataclass(frozen=True)
class HeadPart:
    """The readout for one prompt language: which hidden state it reads, and the regression on it."""

    lang: str
    readout: Readout
    mean: np.ndarray  # feature standardisation: hidden state, then the zero-shot log-odds
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def log_odds(self, hidden: np.ndarray, zero_shot: np.ndarray) -> np.ndarray:
        """Log-odds of "negative" for each row: `hidden` [rows, size] from `readout`, `zero_shot` [rows]."""
        return ((features_of(hidden, zero_shot) - self.mean) / self.scale) @ self.weights + self.bias


@dataclass(frozen=True)
class Head:
    fingerprint: str  # the weights it was fitted on (Backend.fingerprint)
    prompt_version: str  # the prompt whose answer position it reads
    parts: dict[str, HeadPart]  # by prompt language
    meta: dict = field(default_factory=dict, compare=False)  # the sidecar: what it was fitted on and how it scored

    @property
    def head_id(self) -> str:
        """Names this exact head: stored with every label it produced, so a label can be reproduced."""
        digest = hashlib.sha256()
        for lang in sorted(self.parts):
            part = self.parts[lang]
            digest.update(f"{lang}:{part.readout.kind}:{part.readout.layer}".encode())
            for array in (part.mean, part.scale, part.weights, np.array([part.bias])):
                digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        return f"{self.fingerprint}__{self.prompt_version}__{digest.hexdigest()[:10]}"


def features_of(hidden: np.ndarray, zero_shot: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(hidden, dtype=np.float64),
                           np.asarray(zero_shot, dtype=np.float64)[:, None]], axis=1)


SHIPPED = Path(__file__).parent / "data" / "sentiment"  # the fitting set every install has (its README: sources)


def shipped_files() -> list[Path]:
    return sorted(SHIPPED.glob("*.csv"))


STRENGTH = 0.01  # the inverse regularisation C, chosen leave-one-domain-out (0.002-0.2 tried; README, Accuracy)


def fit(hidden: np.ndarray, zero_shot: np.ndarray, negative: np.ndarray, *, weights: np.ndarray | None = None,
        strength: float = STRENGTH) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, weights, bias) of an L2-regularised logistic regression (scikit-learn's lbfgs) on standardised
    features. Deterministic for the same inputs."""
    from sklearn.linear_model import LogisticRegression

    if len(set(np.asarray(negative, dtype=bool).tolist())) < 2:
        raise UserError("Fitting a label head needs positive and negative rows in every domain but one (each domain "
                        "is held out in turn); add rows of the missing label or merge the domains.")
    features = features_of(hidden, zero_shot)
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    model = LogisticRegression(C=strength, max_iter=3000)
    model.fit((features - mean) / scale, np.asarray(negative, dtype=int), sample_weight=weights)
    return mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0])


def head_path(folder: Path, fingerprint: str, prompt_version: str) -> Path:
    return Path(folder) / f"{fingerprint}__{prompt_version}.safetensors"


def save_head(head: Head, folder: Path) -> Path:
    """Write the head and its sidecar atomically (a reader never sees half a file)."""
    from safetensors.numpy import save_file

    path = head_path(folder, head.fingerprint, head.prompt_version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, readouts = {}, {}
    for lang, part in head.parts.items():
        tensors |= {f"{lang}.mean": part.mean, f"{lang}.scale": part.scale, f"{lang}.weights": part.weights,
                    f"{lang}.bias": np.array([part.bias])}
        readouts[lang] = {"kind": part.readout.kind, "layer": part.readout.layer}
    meta = {"fingerprint": head.fingerprint, "prompt_version": head.prompt_version, "readouts": json.dumps(readouts)}
    partial = path.with_suffix(".part")
    save_file(tensors, str(partial), metadata=meta)
    sidecar = path.with_suffix(".json")
    sidecar.with_suffix(".json.part").write_text(json.dumps({**head.meta, "head_id": head.head_id}, indent=2,
                                                            ensure_ascii=False))
    partial.replace(path)
    sidecar.with_suffix(".json.part").replace(sidecar)
    return path


def load_head(path: Path) -> Head:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        sidecar = path.with_suffix(".json")
        info = json.loads(sidecar.read_text()) if sidecar.exists() else {}
        parts = {lang: HeadPart(lang=lang, readout=Readout(kind=spec["kind"], layer=int(spec["layer"])),
                                mean=tensors[f"{lang}.mean"], scale=tensors[f"{lang}.scale"],
                                weights=tensors[f"{lang}.weights"], bias=float(tensors[f"{lang}.bias"][0]))
                 for lang, spec in json.loads(meta["readouts"]).items()}
        return Head(fingerprint=meta["fingerprint"], prompt_version=meta["prompt_version"], parts=parts, meta=info)
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"The label head {path} cannot be read ({exc}); delete it or fit it again with "
                        "python -m aio_core fit-head.") from None


def find_head(folder: Path, fingerprint: str, prompt_version: str) -> Head | None:
    """The head fitted on exactly these weights and this prompt, or None. A file whose recorded fingerprint or
    prompt differs from its name (copied by hand) is never applied."""
    path = head_path(folder, fingerprint, prompt_version)
    if not path.is_file():
        return None
    head = load_head(path)
    if (head.fingerprint, head.prompt_version) != (fingerprint, prompt_version):
        return None
    return head


def expected_calibration_error(p_negative: Sequence[float], negative: Sequence[bool], bins: int = 10) -> float:
    """Mean |confidence - accuracy| over equal-width confidence bins, weighted by how many labels fall in each."""
    return sum(abs(b["confidence"] - b["accuracy"]) * b["n"] for b in reliability(p_negative, negative, bins)) / max(
        1, len(p_negative))


def reliability(p_negative: Sequence[float], negative: Sequence[bool], bins: int = 10) -> list[dict]:
    """The reliability table: for each confidence bin (0.5-1.0), how many labels, their mean confidence and how
    many were right."""
    p = np.asarray(p_negative, dtype=np.float64)
    truth = np.asarray(negative, dtype=bool)
    confidence = np.maximum(p, 1 - p)
    right = (p >= 0.5) == truth
    edges = np.linspace(0.5, 1.0, bins // 2 + 1)
    table = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence >= low) & ((confidence < high) | (high == 1.0))
        if inside.any():
            table.append({"from": float(low), "to": float(high), "n": int(inside.sum()),
                          "confidence": float(confidence[inside].mean()), "accuracy": float(right[inside].mean())})
    return table
