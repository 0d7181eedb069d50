"""Loading from every source AIO_MODEL accepts, the dtype choice, and the one-sentence error."""

from __future__ import annotations

import pytest
import torch
from gguf_file import write_gguf

from aio_core.backends.loading import ModelLoadError, choose_dtype, load_model
from aio_core.backends.tiny import build_tiny
from aio_core.classify import classify
from aio_core.engine import load_engine
from aio_core.profiles import GENERIC, find_profile

TEXTS = ["今天的实验终于成功了，太棒了！", "this is awful"]


def _p_negative(settings) -> list[float]:
    return [s.p_negative for s in classify(TEXTS, engine=load_engine(settings))]


@pytest.fixture(scope="module")
def reference(engine) -> list[float]:
    return [s.p_negative for s in classify(TEXTS, engine=engine)]


def test_local_folder_loads_the_same_weights(tmp_path, engine, reference):
    model, tokenizer = build_tiny()
    model.save_pretrained(tmp_path / "qwen2.5-0.5b-instruct-copy")
    tokenizer.save_pretrained(tmp_path / "qwen2.5-0.5b-instruct-copy")
    settings = engine.settings.replace(model=str(tmp_path / "qwen2.5-0.5b-instruct-copy"))
    assert _p_negative(settings) == pytest.approx(reference, abs=1e-6)
    assert load_model(settings).profile.key == "qwen2.5-0.5b-instruct"  # found from the folder name


def test_hub_id_loads_from_the_local_cache_offline(tmp_path, monkeypatch, engine, reference):
    # The Hugging Face cache layout, filled by hand: what `hf download` would have left on a connected machine.
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen2-0.5B-Instruct" / "snapshots" / ("0" * 40)
    model, tokenizer = build_tiny()
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    settings = engine.settings.replace(model="Qwen/Qwen2-0.5B-Instruct")
    loaded = load_model(settings)
    assert (loaded.source, loaded.profile.key) == ("hub", "qwen2-0.5b-instruct")
    assert _p_negative(settings) == pytest.approx(reference, abs=1e-6)


def test_gguf_file_loads_the_same_weights_and_tokenizer(tmp_path, engine, reference):
    model, tokenizer = build_tiny()
    path = write_gguf(model, tokenizer, tmp_path / "qwen1_5-0_5b-chat-f32.gguf")
    settings = engine.settings.replace(model=str(path))
    loaded = load_model(settings)
    assert loaded.source == "gguf"
    assert loaded.profile.key == "qwen1.5-0.5b-chat"  # GGUF names write 1.5 as 1_5
    sample = "hello  你好 <|im_end|>"
    assert loaded.tokenizer(sample)["input_ids"] == tokenizer(sample)["input_ids"]
    assert _p_negative(settings) == pytest.approx(reference, abs=1e-5)


@pytest.mark.parametrize("name, words", [
    ("/no/such/folder", "looks like a path"),
    ("./missing.gguf", "does not exist"),
    ("Qwen/Qwen1.5-0.5B-Chat", "not in the local Hugging Face cache"),
])
def test_missing_model_is_one_clear_sentence(tmp_path, monkeypatch, name, words):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    from aio_core.settings import Settings

    with pytest.raises(ModelLoadError) as error:
        load_model(Settings(model=name))
    message = str(error.value)
    assert words in message and "AIO_MODEL" in message and "\n" not in message


def test_folder_that_is_not_a_model_is_refused(tmp_path):
    from aio_core.settings import Settings

    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="without config.json"):
        load_model(Settings(model=str(tmp_path)))


def test_broken_weights_give_a_clear_error_not_a_traceback(tmp_path):
    from aio_core.settings import Settings

    model, tokenizer = build_tiny()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ModelLoadError, match="Could not load AIO_MODEL"):
        load_model(Settings(model=str(tmp_path)))


@pytest.mark.parametrize("requested, device, cpu_bf16, cuda_bf16, expected", [
    ("auto", "cpu", True, False, torch.bfloat16),   # AVX512-BF16/AMX: bf16 was ~2x faster than fp32 here
    ("auto", "cpu", False, False, torch.float32),   # no native bf16: emulated bf16 would be slower than fp32
    ("auto", "cuda", False, True, torch.bfloat16),
    ("auto", "cuda", False, False, torch.float16),
    ("float32", "cpu", True, False, torch.float32),  # an explicit choice is kept
    ("bfloat16", "cpu", False, False, torch.bfloat16),
])
def test_dtype_choice(requested, device, cpu_bf16, cuda_bf16, expected):
    assert choose_dtype(requested, torch.device(device), cpu_bf16=cpu_bf16, cuda_bf16=cuda_bf16) == expected


def test_loaded_model_has_the_dtype_asked_for():
    from aio_core.settings import Settings

    assert load_model(Settings(model="tiny-random", dtype="bfloat16")).model.dtype == torch.bfloat16
    assert load_model(Settings(model="tiny-random", dtype="float32")).model.dtype == torch.float32


@pytest.mark.parametrize("names, key", [
    (("Qwen/Qwen1.5-0.5B-Chat",), "qwen1.5-0.5b-chat"),
    (("qwen1_5-1_8b-chat-q4_k_m.gguf",), "qwen1.5-1.8b-chat"),
    (("Qwen/Qwen2-0.5B-Instruct",), "qwen2-0.5b-instruct"),
    (("hf", "Qwen2.5 Coder 0.5B Instruct AWQ"), "qwen2.5-0.5b-instruct"),  # from a folder's config.json
    (("Qwen/Qwen2.5-1.5B-Instruct",), "qwen2.5-1.5b-instruct"),
    (("Qwen/Qwen3-0.6B",), "qwen3-0.6b"),
])
def test_profiles_are_found_from_any_spelling(names, key):
    assert find_profile(*names).key == key


def test_qwen3_is_told_not_to_think_and_unknown_models_get_the_seed_defaults():
    assert find_profile("Qwen/Qwen3-0.6B").template_kwargs == {"enable_thinking": False}
    unknown = find_profile("someone/other-model")
    assert unknown is GENERIC
    assert (unknown.generation.temperature, unknown.generation.top_p, unknown.generation.max_new_tokens) == \
        (0.7, 0.9, 128)


def test_tiny_random_is_labelled_meaningless(engine):
    assert engine.is_random and "meaningless" in engine.description
