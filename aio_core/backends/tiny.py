"""Random-weight Qwen2-architecture models built in-process: `tiny-random` for tests and offline demos, and the
real Qwen1.5-0.5B shape for the speed benchmark. Their labels and replies are meaningless by construction.

The tokenizer is a real byte-level BPE Qwen2 tokenizer with the ChatML special tokens and Qwen's chat template, so
every code path (templates, special tokens, padding, streaming decode of split UTF-8) runs as with a real model.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Qwen1.5-Chat's template (ChatML with a default system message).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map that byte-level BPE vocabularies are written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def _apply_bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one pre-token: repeatedly merge the adjacent pair with the best (lowest) rank."""
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(itertools.pairwise(symbols))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def _word_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """BPE merges that make each word one token, as a trained vocabulary holds common words: for each word, join
    whatever segments the merges so far leave, left to right."""
    mapping = _bytes_to_unicode()
    merges: list[tuple[str, str]] = [("Ġ", "Ġ")]
    ranks = {pair: i for i, pair in enumerate(merges)}
    for word in words:
        segments = _apply_bpe([mapping[b] for b in word.encode()], ranks)
        while len(segments) > 1:
            ranks[(segments[0], segments[1])] = len(merges)
            merges.append((segments[0], segments[1]))
            segments = _apply_bpe(segments, ranks)
    return merges


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The 256 single-byte tokens in byte order, merged tokens for two spaces and for every label word of every
    prompt version (so, as with a real Qwen tokenizer, a label word is one token), then the special tokens."""
    from aio_core.prompts import RISK_PROMPT, VERSIONS

    words = dict.fromkeys(w for v in (*VERSIONS.values(), RISK_PROMPT) for forms in v.label_words.values()
                          for w in forms)
    merges = _word_merges(words)
    mapping = _bytes_to_unicode()
    vocab = {mapping[b]: b for b in range(256)}
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return vocab, merges


def build_tiny_tokenizer() -> Qwen2Tokenizer:
    """A byte-level BPE Qwen2 tokenizer: every text round-trips exactly; label words are single tokens."""
    vocab, merges = tiny_vocab_and_merges()
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.model_max_length = 32768
    return tokenizer


def qwen2_config(tokenizer: Qwen2Tokenizer, **shape: int) -> Qwen2Config:
    """A Qwen2 config for `tokenizer`'s special tokens; `shape` sets hidden_size, num_hidden_layers, ..."""
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    return Qwen2Config(
        bos_token_id=ids[0],
        eos_token_id=[ids[2], ids[0]],
        pad_token_id=ids[0],
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        **shape,
    )


def build_random_model(config: Qwen2Config, *, dtype: torch.dtype, seed: int = 0) -> Qwen2ForCausalLM:
    """Random weights drawn from a fixed seed (as Qwen2's own init: normal(0, initializer_range), norms at 1).

    The model is created on the meta device and each weight is filled in slices of rows, so peak memory stays at one
    copy of the model in `dtype` (initialising a 150M-entry bf16 embedding whole goes through an fp32 temporary).
    The caller's random state is left untouched."""
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    model = model.to(dtype).to_empty(device="cpu")  # cast while on meta (free), then allocate once
    # to_empty unties the output layer from the embedding; tie again before either is touched, so the second
    # 150M-entry copy is never resident.
    model.tie_weights()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.fill_(1.0)
            elif name.endswith(".bias"):
                parameter.zero_()
            else:
                for start in range(0, parameter.shape[0], 8192):
                    rows = parameter[start:start + 8192]
                    rows.copy_(torch.randn(rows.shape, generator=generator) * config.initializer_range)
    # Rotary frequencies are computed, not random, and stay fp32 (the dtype cast above would round them to bf16).
    model.model.rotary_emb = Qwen2RotaryEmbedding(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    return model.eval()


def build_tiny(dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Qwen2ForCausalLM, Qwen2Tokenizer]:
    """The `tiny-random` model: 2 layers, hidden size 64, a byte-level BPE vocabulary of a few hundred tokens."""
    tokenizer = build_tiny_tokenizer()
    config = qwen2_config(tokenizer, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    return build_random_model(config, dtype=dtype, seed=seed), tokenizer


# The real Qwen1.5-0.5B-Chat shape, for measuring speed offline (speed does not depend on weight values).
QWEN15_05B_SHAPE = {"vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 24,
                    "num_attention_heads": 16, "num_key_value_heads": 16}
_HAN = r"[\u3400-\u4dbf\u4e00-\u9fff]"
_EMOJI = r"[\u2600-\u27bf\U0001F000-\U0001FAFF]"


def build_standin_tokenizer(corpus: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A tokenizer that cuts text about where Qwen's does: Qwen's own pre-tokenizer regex, each emoji alone, runs of
    Han characters in groups of up to 7 cut into pairs (2+2+2+1: Qwen averages ~0.6 tokens per Chinese character),
    one token per piece. tests/test_bench.py holds it within 20% of the real tokenizer on every bench text.
    Pieces seen in `corpus` get ids of their own; the rest share an unknown id, which changes nothing about speed."""
    from aio_core.bench_texts import BENCH_TEXTS
    from aio_core.prompts import all_prompt_texts

    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.Split(Regex(_EMOJI), behavior="isolated"),
        pre_tokenizers.Split(Regex(f"{_HAN}{{1,7}}"), behavior="isolated"),
        pre_tokenizers.Split(Regex(f"{_HAN}{{2}}(?={_HAN})"), behavior="isolated"),
    ])
    vocab = {token: i for i, token in enumerate(("<unk>", *SPECIAL_TOKENS))}
    for text in (*BENCH_TEXTS, *all_prompt_texts(), *corpus):
        for piece, _ in pre.pre_tokenize_str(text):
            vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_qwen15_shape(dtype: torch.dtype, seed: int = 0) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerFast]:
    """Random weights of Qwen1.5-0.5B-Chat's shape (tied embeddings) with the stand-in tokenizer."""
    tokenizer = build_standin_tokenizer()
    config = qwen2_config(tokenizer, **QWEN15_05B_SHAPE)
    return build_random_model(config, dtype=dtype, seed=seed), tokenizer


def save_tiny_folder(folder: str, seed: int = 0) -> str:
    """A tiny random model saved as a transformers folder that model servers load too (vLLM's CPU attention needs a
    head size of 32 or more, so this one has 2 heads of 32 instead of tiny-random's 4 of 16). For testing a server
    backend against the in-process one on the same weights; its output is meaningless."""
    tokenizer = build_tiny_tokenizer()
    config = qwen2_config(tokenizer, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    build_random_model(config, dtype=torch.float32, seed=seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
