"""Undo the ways people hide a phrase from a word list, so the risk phrase floor reads what a person would read.

`k1ll mys3lf`, `k i l l m y s e l f`, a zero-width space inside a word, Cyrillic letters that look Latin
(`kіll` with a Ukrainian і), full-width or mathematical letters, and spaces or invisible characters inside a Chinese
phrase (`不想 活了`) all read as the plain phrase to a person, and all passed the phrase list of phrases-2 as
"none". `plain_forms` returns the forms of a text to match phrases against: the text as typed (NFKC) and its
de-evaded form, twice when a `1` may stand for `i` or for `l`. The stored and displayed text is never changed, and
the model reads the text as before (these forms are only for matching).
"""

from __future__ import annotations

import re
import unicodedata

# Letters from other scripts that look like Latin ones (lower case: the text is case-folded first). Cyrillic and
# Greek are the ones used to dodge filters; Unicode's confusables table has thousands more, nearly all irrelevant.
_LOOKALIKES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "һ": "h", "ԛ": "q", "ԝ": "w",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ω": "w", "ı": "i", "ɩ": "i", "ɡ": "g", "ʟ": "l",
})
# Digits and signs that stand for letters inside a word ("k1ll", "d!e", "$uicide"); 1 is tried as i and as l.
_LEET = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "l", "€": "e"}
_LEET_CHARS = re.escape("".join(_LEET)) + "1"
_LEET_WORD = re.compile(rf"[a-z{_LEET_CHARS}]*[a-z][a-z{_LEET_CHARS}]*")
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
# Spaces, dots, dashes and the like between two Han characters (never meaningful inside a Chinese phrase).
_HAN_GAP = re.compile(rf"(?<=[{_HAN}])[\s.\-_*·•・,，、~]+(?=[{_HAN}])")
# Three or more single letters in a row, each followed by one separator: "k i l l", "k.i.l.l", "k-i-l-l".
_SPACED = re.compile(r"(?<![a-z])(?:[a-z][\s.\-_*·]){2,}[a-z](?![a-z])")
_FOLD_SPACES = re.compile(r"\s+")


def _invisible(ch: str) -> bool:
    """Zero-width and other format characters (ZWSP, ZWJ, word joiner, BOM, soft hyphen, bidi marks)."""
    return unicodedata.category(ch) == "Cf"


def _leet(word: str, one: str) -> str:
    """A word mostly of letters with a few stand-ins ("k1ll", "mys3lf"); not a number or a code ("4x100m", "2024")."""
    letters = sum(c.isalpha() for c in word)
    if letters * 2 < len(word) or not any(c in _LEET or c == "1" for c in word):
        return word
    return "".join(one if c == "1" else _LEET.get(c, c) for c in word)


def plain_forms(text: str) -> tuple[str, ...]:
    """The text as typed (NFKC) and as a person reads it with every evasion above undone; duplicates dropped."""
    typed = unicodedata.normalize("NFKC", text)
    plain = "".join(ch for ch in typed if not _invisible(ch)).casefold().translate(_LOOKALIKES)
    plain = _HAN_GAP.sub("", plain)
    forms = [typed]
    for one in ("i", "l"):
        form = _LEET_WORD.sub(lambda m, one=one: _leet(m.group(0), one), plain)
        form = _SPACED.sub(lambda m: re.sub(r"[\s.\-_*·]", "", m.group(0)), form)
        forms.append(_FOLD_SPACES.sub(" ", form).strip())
    return tuple(dict.fromkeys(forms))
