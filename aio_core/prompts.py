"""Every prompt the product sends: the versioned sentiment-analyst prompts and the warm chat-assistant prompts.

A prompt version is immutable once it has shipped: its id is stored with every label, so a label can always be traced
to the exact words that produced it. New wording means a new version; the measured figures of each are in the README
("Accuracy") and in the comment above it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from aio_core.settings import SettingsError

LABELS = ("positive", "negative")

# Where the user's text goes; split out before tokenizing so that the text is tokenized on its own, with special
# tokens disabled, and can never become template markup.
SLOT = "\x00TEXT\x00"


@dataclass(frozen=True)
class PromptVariant:
    """The prompt for one input language."""

    system: str
    user: str  # contains SLOT once, between delimiters
    answer_prefix: str = ""  # the assistant turn starts with this; the label word is read right after it
    examples: tuple[tuple[str, str], ...] = ()  # our own few-shot pairs (text, label), never evaluation rows


@dataclass(frozen=True)
class PromptVersion:
    version: str
    variants: dict[str, PromptVariant]  # by language: "en", "zh"
    # Surface forms of each label; the first token of each counts, and the class score sums their probabilities.
    label_words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    calibrate: bool = False  # subtract the bias the prompt shows on content-free inputs (Zhao et al., 2021)
    content_free: tuple[str, ...] = ("N/A", "", "[MASK]")

    def variant_for(self, text: str) -> tuple[str, PromptVariant]:
        lang = detect_lang(text)
        return (lang, self.variants[lang]) if lang in self.variants else next(iter(self.variants.items()))


def detect_lang(text: str) -> str:
    """'zh' when Han characters are at least a third of the letters, else 'en' (emoji-only and empty count as en)."""
    han = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf")
    letters = sum(1 for ch in text if ch.isalpha())
    return "zh" if letters and han * 3 >= letters else "en"


_OPEN, _CLOSE = "<text>", "</text>"
_DELIMITER = re.compile(r"</?\s*text\s*>", re.IGNORECASE)


def fence(text: str) -> str:
    """The user's text as data: its own copies of the delimiters are defused so it cannot close the block early."""
    return _DELIMITER.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), text)


def normalize_input(text: str) -> str:
    """Trivial variants read the same: full-width ASCII to half-width (NFKC), runs of spaces folded, ends trimmed."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[ \t\u00a0\u3000]+", " ", text)
    return text.strip()


_LABEL_WORDS = {
    "positive": ("Positive", "positive", " Positive", "正面", "积极"),
    "negative": ("Negative", "negative", " Negative", "负面", "消极"),
}

# v1: the plain English system prompt of ../shared/data/README.md (reference 81.5% on dev_600 with the eval model),
# with the text fenced. Kept as the baseline the later versions are measured against.
V1 = PromptVersion(
    version="v1-plain",
    variants={
        "en": PromptVariant(
            system="You are a sentiment classifier. Reply with exactly one word: Positive or Negative.",
            user=f"{_OPEN}{SLOT}{_CLOSE}",
        ),
    },
    label_words=_LABEL_WORDS,
)

VERSIONS = {p.version: p for p in (V1,)}
DEFAULT_VERSION = "v1-plain"


def get_prompt(version: str = "") -> PromptVersion:
    try:
        return VERSIONS[version or DEFAULT_VERSION]
    except KeyError:
        raise SettingsError(f"AIO_PROMPT_VERSION={version!r} is unknown; use one of: {', '.join(VERSIONS)}.") from None


def all_prompt_texts() -> list[str]:
    """Every fixed string the prompts send (for building the benchmark's stand-in vocabulary)."""
    texts = []
    for version in VERSIONS.values():
        for variant in version.variants.values():
            texts += [variant.system, variant.user, variant.answer_prefix, *(t for t, _ in variant.examples)]
        texts += [w for words in version.label_words.values() for w in words]
    return texts


# ---- the warm assistant -------------------------------------------------------------------------------------------

_ASSISTANT = {
    "en": "You are a warm, caring assistant. Answer in the user's language, briefly and kindly.",
    "zh": "你是一个温暖、体贴的助手。用用户的语言简短而友善地回答。",
}
_TONE = {
    "en": {
        "positive": " The user sounds happy: share their joy and keep the mood bright.",
        "negative": " The user sounds upset: acknowledge their feelings first, be gentle and supportive, "
                    "and offer one small practical step if it helps.",
        "uncertain": "",
    },
    "zh": {
        "positive": "用户心情不错：分享他的喜悦，保持轻松愉快的语气。",
        "negative": "用户情绪低落：先理解和安慰他的感受，语气温柔，必要时给出一个小而可行的建议。",
        "uncertain": "",
    },
}


def assistant_system_prompt(lang: str, label: str | None, uncertain: bool = False) -> str:
    """The chat role's system prompt, its tone adapted to the user's detected sentiment."""
    lang = lang if lang in _ASSISTANT else "en"
    tone = "uncertain" if uncertain or label is None else label
    return _ASSISTANT[lang] + _TONE[lang][tone]
