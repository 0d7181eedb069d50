"""A model behind an OpenAI-compatible server (vLLM on a GPU or CPU; any server that takes token-id prompts):
`AIO_MODEL=openai+http://HOST:PORT/v1`.

The prompt is still tokenized here, with the model's own tokenizer (`AIO_TOKENIZER`, by default the served model's
name), and sent as token ids, so the chat-template injection defences and every prompt are exactly those of the
in-process backend. Labels are read from the server's log-probabilities of the label tokens after one generated
token; replies are streamed from it.

What a server cannot do, and what happens instead (also in `description` and the README):
- It gives no hidden states, so a learned label head is not used (the engine says so and labels zero-shot).
- It returns only its top-K log-probabilities (`AIO_SERVER_LOGPROBS`, at most vLLM's `--max-logprobs`, 20 by
  default), while a prompt's label words have more first tokens (47 for the default prompt). A token outside a row's
  top K counts as improbable; a label none of whose tokens is there gets the K-th log-probability, an upper bound.
  Such rows are counted (`runtime["approximate_rows"]`); README, "Scaling out", measures what this costs.
- Sampling: temperature, top-p, top-k, repetition penalty, seed and the other-script ban (as `logit_bias`) are the
  server's own options; transformers' no-repeat-n-gram rule has no server option and is not applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from aio_core.backends.base import Candidate, Readout, Scores
from aio_core.errors import UserError
from aio_core.profiles import ModelProfile, Sampling, find_profile
from aio_core.settings import Settings
from aio_core.templating import Tokenizer

log = logging.getLogger(__name__)

SCHEME = "openai+"


class ServerError(UserError, RuntimeError):
    """The model server could not be reached or refused a request; the message says what to check."""


@dataclass(frozen=True)
class ServerPrefix:
    ids: list[int]  # the server caches the shared prefix itself (vLLM: automatic prefix caching)


class Client:
    """JSON over HTTP to one OpenAI-compatible base URL, with the API key; errors become one sentence."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _request(self, path: str, body: dict[str, Any] | None) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        return urllib.request.Request(self.base_url + path, data=data, headers=headers,
                                      method="POST" if body is not None else "GET")

    def _open(self, path: str, body: dict[str, Any] | None):  # noqa: ANN202 - an http.client.HTTPResponse
        try:
            return urllib.request.urlopen(self._request(path, body), timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            if exc.code in (401, 403):
                raise ServerError(f"The model server at {self.base_url} refused the API key (HTTP {exc.code}); "
                                  "set AIO_API_KEY to a key it accepts.") from None
            raise ServerError(f"The model server at {self.base_url} answered HTTP {exc.code} to {path}: "
                              f"{detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"The model server at {self.base_url} cannot be reached ({reason}); start it, or set "
                              "AIO_MODEL=openai+http://HOST:PORT/v1 to where it listens.") from None

    def get(self, path: str) -> dict[str, Any]:
        with self._open(path, None) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._open(path, body) as response:
            return json.loads(response.read())

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Server-sent events of a streamed request, as parsed JSON chunks."""
        with self._open(path, {**body, "stream": True}) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                payload = line[len("data:"):].strip()
                if payload == "[DONE]":
                    return
                chunk = json.loads(payload)
                if "error" in chunk:
                    raise ServerError(f"The model server at {self.base_url} failed while streaming: "
                                      f"{str(chunk['error'])[:300]}")
                yield chunk


def load_tokenizer(name: str) -> Tokenizer:
    """The tokenizer `name` names: tiny-random's, or a transformers tokenizer (folder, or hub id in the cache)."""
    from aio_core.backends.loading import TINY, ModelLoadError

    if name == TINY:
        from aio_core.backends.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception as exc:  # OSError, ValueError... for a name that is not a usable tokenizer here
        raise ModelLoadError(f"The tokenizer of the served model ({name}) cannot be loaded here: "
                             f"{str(exc).splitlines()[0][:200]}. Set AIO_TOKENIZER to a local copy of the served "
                             "model's folder (its tokenizer files are enough) or its hub id in the local cache."
                             ) from None


class ServerBackend:
    """A model served over the OpenAI API; see the module docstring for what it can and cannot do."""

    reads_hidden_states = False
    layers = 0
    is_random = False

    def __init__(self, settings: Settings) -> None:
        started = time.perf_counter()
        self.name = settings.model.strip()
        self.source = "openai"
        base_url = self.name[len(SCHEME):]
        if not base_url.startswith(("http://", "https://")):
            raise ServerError(f"AIO_MODEL={self.name} must look like openai+http://HOST:PORT/v1.")
        self.client = Client(base_url, settings.api_key)
        served = self.client.get("/models").get("data") or []
        ids = [m.get("id") for m in served]
        if settings.served_model and settings.served_model not in ids:
            raise ServerError(f"The model server at {base_url} does not serve AIO_SERVED_MODEL="
                              f"{settings.served_model}; it serves: {', '.join(map(str, ids)) or 'nothing'}.")
        if not ids:
            raise ServerError(f"The model server at {base_url} serves no model yet; wait until it has loaded one.")
        self.served_model = settings.served_model or ids[0]
        entry = served[ids.index(self.served_model)]
        self.tokenizer: Tokenizer = load_tokenizer(settings.tokenizer or entry.get("root") or self.served_model)
        if getattr(self.tokenizer, "chat_template", None) is None:
            from aio_core.backends.loading import FIX, ModelLoadError

            raise ModelLoadError(f"The tokenizer of {self.served_model} has no chat template. {FIX}")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.is_random = self.served_model == "tiny-random" or settings.tokenizer == "tiny-random"
        self.profile: ModelProfile = find_profile(self.served_model, str(entry.get("root") or ""))
        self.title = self.served_model
        self.max_logprobs = settings.server_logprobs
        self.max_scored_tokens = self.max_logprobs
        # The server says nothing about its weights' bytes; the served name and root stand for them, so a learned
        # head is never matched to it (it could not be used anyway: no hidden states).
        self.fingerprint = "openai-" + hashlib.sha256(
            f"{base_url}|{self.served_model}|{entry.get('root')}".encode()).hexdigest()[:16]
        self._approximate_rows = 0
        self._count = threading.Lock()
        self.load_seconds = time.perf_counter() - started

    @property
    def description(self) -> str:
        return f"{self.served_model} (served at {self.client.base_url}, OpenAI API)"

    @property
    def runtime(self) -> dict[str, object]:
        return {"dtype": "server", "device": self.client.base_url, "threads": 0, "load_s": self.load_seconds,
                "approximate_rows": self._approximate_rows}

    def stop_ids(self) -> set[int]:
        tokenizer = self.tokenizer
        ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"),
               tokenizer.convert_tokens_to_ids("<|endoftext|>")}
        return {i for i in ids if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id}

    def prefix(self, ids: list[int]) -> ServerPrefix:
        return ServerPrefix(list(ids))

    def _completion(self, prompts: list[list[int]], **options: object) -> list[dict[str, Any]]:
        body = {"model": self.served_model, "prompt": prompts, "max_tokens": 1, "temperature": 0.0, **options}
        choices = self.client.post("/completions", body).get("choices") or []
        if len(choices) != len(prompts):
            raise ServerError(f"The model server at {self.client.base_url} answered {len(choices)} completions for "
                              f"{len(prompts)} prompts.")
        return sorted(choices, key=lambda c: c.get("index", 0))

    @staticmethod
    def _top(choice: dict[str, Any]) -> dict[int, float]:
        """The first generated position's top log-probabilities, by token id."""
        tops = ((choice.get("logprobs") or {}).get("top_logprobs") or [{}])[0] or {}
        found = {}
        for key, value in tops.items():
            if isinstance(key, str) and key.startswith("token_id:"):
                found[int(key.split(":", 1)[1])] = float(value)
        return found

    def score(self, prefix: ServerPrefix, bodies: Sequence[list[int]], token_ids: Sequence[int], *,
              readouts: Sequence[Readout] = (), text_tail: int = 0, use_prefix_cache: bool = True) -> Scores:
        """One request per batch: every row's top-K log-probabilities at the answer position. A label token outside
        a row's top K counts as improbable (-inf); a label none of whose tokens is in the top K gets the K-th
        log-probability, the most it can have (`Scores.floor`). Rows with tokens outside the top K are counted in
        `runtime["approximate_rows"]`; with K of at least the vocabulary size every value is exact."""
        prompts = [prefix.ids + list(body) for body in bodies]
        choices = self._completion(prompts, logprobs=self.max_logprobs, return_tokens_as_token_ids=True)
        out = np.full((len(prompts), len(token_ids)), -np.inf, dtype=np.float32)
        floor = np.zeros(len(prompts), dtype=np.float32)
        approximate = 0
        for row, choice in enumerate(choices):
            top = self._top(choice)
            if not top:
                raise ServerError(f"The model server at {self.client.base_url} returned no log-probabilities; it "
                                  "must support logprobs and return_tokens_as_token_ids (vLLM does).")
            floor[row] = min(top.values())
            for column, token in enumerate(token_ids):
                out[row, column] = top.get(token, -np.inf)
            approximate += any(token not in top for token in token_ids) and len(top) < len(self.tokenizer)
        if approximate:
            with self._count:
                self._approximate_rows += approximate
        return Scores(logprobs=out, hidden=None, floor=floor if approximate else None)

    def candidates(self, ids: list[int], sampling: Sampling, n: int, *, ends: frozenset[int] = frozenset(),
                   readout: Readout | None = None) -> list[Candidate]:
        """`n` streams from the server, one after another (it batches requests itself), each stopped after a token
        in `ends`; a server gives no hidden states, so `hidden` is None and no judge head can read them."""
        found = []
        for k in range(n):
            seeded = replace(sampling, seed=None if sampling.seed is None else sampling.seed + k)
            tokens, finished = [], False
            for token in self.generate(ids, seeded):
                tokens.append(token)
                if token in ends:
                    finished = True
                    break
            else:
                finished = len(tokens) < sampling.max_new_tokens
            found.append(Candidate(ids=tokens, hidden=None, finished=finished))
        return found

    def generate(self, ids: list[int], sampling: Sampling, *, stop_at_end: bool = True) -> Iterator[int]:
        """Token ids streamed from the server, sampled with the server's own options."""
        body: dict[str, Any] = {
            "model": self.served_model, "prompt": ids, "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p if sampling.temperature > 0 else 1.0,
            "return_token_ids": True, "skip_special_tokens": False,
        }
        if sampling.top_k > 0 and sampling.temperature > 0:
            body["top_k"] = sampling.top_k
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.suppress_ids:
            body["logit_bias"] = {str(i): -100 for i in sampling.suppress_ids}
        stop = sorted(self.stop_ids())
        if stop_at_end:
            body["stop_token_ids"] = stop
        else:
            body["ignore_eos"] = True
        for chunk in self.client.stream("/completions", body):
            for choice in chunk.get("choices") or []:
                for token in choice.get("token_ids") or []:
                    if stop_at_end and token in stop:
                        return
                    yield int(token)


def load_server(settings: Settings) -> ServerBackend:
    return ServerBackend(settings)
