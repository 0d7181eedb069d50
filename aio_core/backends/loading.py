"""Load the one model and its tokenizer from whatever `AIO_MODEL` names, on the device and dtype it asks for.

Sources: `tiny-random` (built in-process), a local transformers folder, a `.gguf` file, or a hub id (from the local
Hugging Face cache first; the network only if the cache misses and the hub answers). A failure becomes one
`ModelLoadError` sentence that names `AIO_MODEL` and the fix. The weights' fingerprint is taken here too, from the
files they were read from (see `fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import torch

from aio_core.errors import UserError
from aio_core.profiles import ModelProfile, find_profile
from aio_core.settings import Settings
from aio_core.templating import Tokenizer

log = logging.getLogger(__name__)

TINY = "tiny-random"
RANDOM_SHAPE = "random-qwen1.5-0.5b"  # the real model's shape with random weights, for measuring speed offline
FIX = ("Set AIO_MODEL (or --model) to a local model folder, a .gguf file, a hub id already in the Hugging Face "
       "cache, or tiny-random for an offline demo with meaningless output.")


class ModelLoadError(UserError, RuntimeError):
    """The model named by AIO_MODEL could not be loaded; the message says why and how to fix it."""


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    tokenizer: Tokenizer
    name: str  # the AIO_MODEL value, as the user wrote it
    title: str  # the model's own name, for people (never a path: see `model_title`)
    source: str  # tiny-random | random-qwen1.5-0.5b | folder | gguf | hub
    profile: ModelProfile
    dtype: torch.dtype
    device: torch.device
    is_random: bool  # random weights: every label and reply is meaningless
    load_seconds: float
    fingerprint: str


@cache
def cpu_supports_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX); there bf16 runs ~2x faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
        return " avx512_bf16" in flags or " amx_bf16" in flags
    except OSError:
        return bool(getattr(torch.backends, "mkldnn", None) and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def choose_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("AIO_DEVICE=cuda but PyTorch sees no CUDA GPU here; set AIO_DEVICE=cpu or auto.")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def choose_dtype(requested: str, device: torch.device, *, cpu_bf16: bool, cuda_bf16: bool = False) -> torch.dtype:
    """`auto`: bf16 on a CPU that has it, bf16/fp16 on CUDA, otherwise fp32; an explicit choice is kept."""
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if cuda_bf16 else torch.float16
    return torch.bfloat16 if cpu_bf16 else torch.float32


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect, so an offline machine fails in seconds instead of retrying for half a minute."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname or "", endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def source_of(name: str) -> tuple[str, Path | None]:
    if name in (TINY, RANDOM_SHAPE):
        return name, None
    path = Path(name).expanduser()
    if name.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"AIO_MODEL={name} names a .gguf file that does not exist. {FIX}")
        return "gguf", path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"AIO_MODEL={name} is a folder without config.json, so not a transformers model "
                                 f"folder. {FIX}")
        return "folder", path
    # A hub id is "name" or "org/name"; anything else that is not on disk was meant as a path.
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name:
        raise ModelLoadError(f"AIO_MODEL={name} looks like a path but nothing is there. {FIX}")
    return "hub", None


def check_model(settings: Settings) -> str | None:
    """Without loading anything: the sentence saying `AIO_MODEL` names a file or folder that is not there (or not a
    model), or None. A hub id is only known to work once it is loaded."""
    try:
        source_of(settings.model.strip())
    except ModelLoadError as error:
        return str(error)
    return None


def _recorded_name(folder: Path) -> str | None:
    """The original model name a converted folder recorded in its config.json, for finding its profile."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config.get("_model_name_or_path") or config.get("_name_or_path")


def model_title(source: str, name: str, path: Path | None) -> str:
    """The model's own name, for people: a hub id as given; a folder's recorded hub id (its config.json's
    `_name_or_path`, when that is an id and not a path on some machine), else the folder's name; a GGUF file's name.
    Not the profile's hub id: a profile is only the nearest known family (a Coder or fine-tuned model shares its
    base's), and not the path, which says where the files are (for admins) rather than what the model is."""
    if source == "folder" and path is not None:
        recorded = (_recorded_name(path) or "").strip()
        is_id = recorded.count("/") == 1 and not recorded.startswith((".", "/", "~")) and ":" not in recorded
        return recorded if is_id and not Path(recorded).expanduser().exists() else path.name
    if source == "gguf" and path is not None:
        return path.name
    return name


def _from_pretrained(where: str, **kwargs: object) -> tuple[torch.nn.Module, Tokenizer]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its bars would land in the dashboard's log and the CLI's stderr

    tokenizer = AutoTokenizer.from_pretrained(where, **{k: v for k, v in kwargs.items() if k != "dtype"})
    model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    return model, tokenizer


def load_model(settings: Settings) -> LoadedModel:
    """Load the model `settings.model` names; raise ModelLoadError with a fix if it cannot be loaded."""
    started = time.perf_counter()
    name = settings.model.strip()
    device = choose_device(settings.device)
    dtype = choose_dtype(settings.dtype, device, cpu_bf16=cpu_supports_bf16(),
                         cuda_bf16=device.type == "cuda" and torch.cuda.is_bf16_supported())
    if settings.threads:
        torch.set_num_threads(settings.threads)
    source, path = source_of(name)
    try:
        if source == TINY:
            from aio_core.backends.tiny import build_tiny

            model, tokenizer = build_tiny(dtype=dtype)
            profile = find_profile("Qwen2-0.5B-Instruct")
        elif source == RANDOM_SHAPE:
            from aio_core.backends.tiny import build_qwen15_shape

            model, tokenizer = build_qwen15_shape(dtype=dtype)
            profile = find_profile("Qwen/Qwen1.5-0.5B-Chat")
        elif source == "gguf":
            _require_gguf_reader(name)
            model, tokenizer = _from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
            profile = find_profile(path.name, path.parent.name)
        elif source == "folder":
            model, tokenizer = _from_pretrained(str(path), dtype=dtype)
            profile = find_profile(path.name, _recorded_name(path))
        else:
            model, tokenizer = _load_hub(name, dtype)
            profile = find_profile(name)
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for unusable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"Could not load AIO_MODEL={name}: {reason[:300]}. {FIX}") from exc
    model = model.to(device).eval()
    if getattr(tokenizer, "chat_template", None) is None:
        raise ModelLoadError(f"AIO_MODEL={name} has no chat template, so it is not a chat model. {FIX}")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded = LoadedModel(model=model, tokenizer=tokenizer, name=name, title=model_title(source, name, path),
                         source=source, profile=profile, dtype=dtype,
                         device=device, is_random=source in (TINY, RANDOM_SHAPE),
                         load_seconds=time.perf_counter() - started,
                         fingerprint=fingerprint(source, _hub_folder(name) if source == "hub" else path,
                                                 model.config.to_json_string()))
    log.info("loaded %s (%s) in %.1fs", name, loaded.fingerprint, loaded.load_seconds)
    return loaded


_SAMPLE = 16 << 20  # bytes read from each end of a weight file


def fingerprint(source: str, where: Path | None, config_json: str) -> str:
    """What identifies the weights: the model's config plus, for each weight file, its name, its size and the
    sha256 of its first and last 16 MiB (any fine-tune changes those bytes; hashing a whole 1 GB file at every start
    would cost seconds). Random-weight models are identified by their config and fixed seed alone."""
    digest = hashlib.sha256(config_json.encode())
    if source in (TINY, RANDOM_SHAPE) or where is None:
        digest.update(source.encode())
        return f"{source}-{digest.hexdigest()[:16]}"
    files = [where] if where.is_file() else sorted(
        p for p in where.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf", ".pt") and p.is_file())
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with file.open("rb") as handle:
            digest.update(handle.read(_SAMPLE))
            handle.seek(max(0, size - _SAMPLE))
            digest.update(handle.read(_SAMPLE))
    return digest.hexdigest()[:16]


def _hub_folder(name: str) -> Path | None:
    """The local snapshot folder a hub id was loaded from."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def _require_gguf_reader(name: str) -> None:
    try:  # transformers needs both to read GGUF files
        import accelerate  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(f"AIO_MODEL={name} is a GGUF file but the {exc.name} package is missing; "
                             "run pip install -r requirements.txt.") from None


def _load_hub(name: str, dtype: torch.dtype) -> tuple[torch.nn.Module, Tokenizer]:
    try:
        return _from_pretrained(name, dtype=dtype, local_files_only=True)
    except OSError:
        if not _hub_reachable():
            raise ModelLoadError(
                f"AIO_MODEL={name} is not in the local Hugging Face cache and the hub cannot be reached from here. "
                f"Download it once on a connected machine (hf download {name}), or {FIX[0].lower()}{FIX[1:]}"
            ) from None
    log.info("%s is not cached; downloading it from the hub", name)
    return _from_pretrained(name, dtype=dtype)
