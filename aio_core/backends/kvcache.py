"""A prompt prefix computed once and shared, read-only, by every row of every later batch.

The classifier's prompt (system message, instructions, examples) is identical for every text, so its keys and values
are computed once per prompt. Each forward pass then sees them through `SharedPrefixCache`, whose layers return
`prefix + new` to the attention and store nothing, so the prefix is never mutated and memory for the concatenation
is held for one layer at a time instead of the whole model.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class _PrefixLayer(DynamicLayer):
    def __init__(self, keys: torch.Tensor, values: torch.Tensor, batch_size: int) -> None:
        super().__init__()
        self._prefix_keys, self._prefix_values = keys, values
        self._batch_size = batch_size
        self.device = keys.device
        self.is_initialized = True
        # get_seq_length() reads self.keys; a 0-batch view gives it the prefix length without holding a copy.
        self.keys, self.values = keys[:0], values[:0]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    def get_seq_length(self) -> int:
        return self._prefix_keys.shape[-2]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object):
        size = (self._batch_size, -1, -1, -1)
        keys = torch.cat([self._prefix_keys.expand(size), key_states], dim=-2)
        values = torch.cat([self._prefix_values.expand(size), value_states], dim=-2)
        return keys, values


class SharedPrefixCache(Cache):
    """A cache that presents a batch-1 prefix to `batch_size` rows without copying or growing it."""

    def __init__(self, prefix: tuple[tuple[torch.Tensor, torch.Tensor], ...], batch_size: int) -> None:
        super().__init__(layers=[_PrefixLayer(k, v, batch_size) for k, v in prefix])


@torch.inference_mode()
def compute_prefix(model: torch.nn.Module, ids: list[int]) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Keys and values of `ids` for every layer, batch size 1."""
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([ids], device=device), cache=cache, use_cache=True, logits_to_keep=1)
    return tuple((layer.keys, layer.values) for layer in cache.layers)
