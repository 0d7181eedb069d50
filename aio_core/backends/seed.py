"""The seed article's method, kept only as the baseline every figure is compared with.

As the article wrote it: a plain (non-chat) prompt, `generate(max_new_tokens=2)`, one text at a time, in fp32, and
the label found by looking for "Positive" in the decoded output. The output it decodes includes the prompt, which
itself contains "Positive", so as written it answers positive for every text; `as_written=False` decodes only the
new tokens, the fairest reading of what the article meant.
"""

from __future__ import annotations

import torch

from aio_core.backends.inprocess import InProcessBackend

SEED_PROMPT = ("你是一个冷酷的情感分析师，只关注情绪极性。请判断以下文本的情感倾向，"
               "输出格式必须为“Positive”或“Negative”：\n{text}\n情感：")


@torch.inference_mode()
def seed_classify(backend: InProcessBackend, text: str, *, as_written: bool = True) -> str:
    model, tokenizer = backend.model, backend.tokenizer
    inputs = tokenizer(SEED_PROMPT.format(text=text), return_tensors="pt").to(model.device)
    with backend.lock:
        output = model.generate(**inputs, max_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    decoded = output[0] if as_written else output[0, inputs["input_ids"].shape[1]:]
    result = tokenizer.decode(decoded, skip_special_tokens=True)
    return "positive" if "Positive" in result else "negative"
