"""Which Unicode scripts each language is written in, and text measurements that depend on the script.

Used to reject LLM rewrites that drifted into another script (a Japanese cloze rewritten as an English question)
and to measure length in words for spaced scripts and in characters for scripts written without spaces.
"""

import re
import unicodedata
from typing import Mapping

# Inclusive code point ranges of the scripts we recognise.
_SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "Latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF), (0x2C60, 0x2C7F),
              (0xA720, 0xA7FF), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)),
    "Cyrillic": ((0x0400, 0x052F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)),
    "Greek": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    "Armenian": ((0x0530, 0x058F),),
    "Hebrew": ((0x0590, 0x05FF),),
    "Arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "Devanagari": ((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
    "Bengali": ((0x0980, 0x09FF),),
    "Gurmukhi": ((0x0A00, 0x0A7F),),
    "Gujarati": ((0x0A80, 0x0AFF),),
    "Tamil": ((0x0B80, 0x0BFF),),
    "Telugu": ((0x0C00, 0x0C7F),),
    "Kannada": ((0x0C80, 0x0CFF),),
    "Malayalam": ((0x0D00, 0x0D7F),),
    "Sinhala": ((0x0D80, 0x0DFF),),
    "Thai": ((0x0E00, 0x0E7F),),
    "Georgian": ((0x10A0, 0x10FF), (0x1C90, 0x1CBF)),
    "Ethiopic": ((0x1200, 0x139F),),
    "Hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7AF), (0xD7B0, 0xD7FF)),
    "Hiragana": ((0x3040, 0x309F),),
    "Katakana": ((0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "Han": ((0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
            (0x20000, 0x2FA1F)),
}

_NON_LATIN_SCRIPTS: dict[str, tuple[str, ...]] = {
    "ar": ("Arabic",), "fa": ("Arabic",), "ur": ("Arabic",), "ps": ("Arabic",), "ckb": ("Arabic",),
    "he": ("Hebrew",), "yi": ("Hebrew",),
    "ru": ("Cyrillic",), "uk": ("Cyrillic",), "bg": ("Cyrillic",), "sr": ("Cyrillic", "Latin"), "be": ("Cyrillic",),
    "mk": ("Cyrillic",), "kk": ("Cyrillic",), "ky": ("Cyrillic",), "tg": ("Cyrillic",), "mn": ("Cyrillic",),
    "el": ("Greek",), "hy": ("Armenian",), "ka": ("Georgian",), "am": ("Ethiopic",), "ti": ("Ethiopic",),
    "hi": ("Devanagari",), "mr": ("Devanagari",), "ne": ("Devanagari",), "sa": ("Devanagari",),
    "bn": ("Bengali",), "as": ("Bengali",), "pa": ("Gurmukhi",), "gu": ("Gujarati",), "ta": ("Tamil",),
    "te": ("Telugu",), "kn": ("Kannada",), "ml": ("Malayalam",), "si": ("Sinhala",), "th": ("Thai",),
    # Japanese mixes kana and kanji; Korean text may carry hanja; Chinese is Han only.
    "ja": ("Hiragana", "Katakana", "Han"), "ko": ("Hangul", "Han"), "zh": ("Han",),
}

# Languages written without spaces between words: length is counted in characters there.
UNSPACED_LANGS = frozenset({"ja", "zh", "th", "lo", "km", "my", "bo"})


def script_of(char: str) -> str | None:
    """The name of the script of one character, or None for characters outside the known scripts."""
    code = ord(char)
    for name, ranges in _SCRIPT_RANGES.items():
        for low, high in ranges:
            if low <= code <= high:
                return name
    return None


def expected_scripts(lang: str) -> tuple[str, ...]:
    """The scripts `lang` is written in (Latin for any language not listed as using another script)."""
    return _NON_LATIN_SCRIPTS.get(lang, ("Latin",))


def letters(text: str) -> list[str]:
    """The characters of `text` that are letters (Unicode category L*) or combining marks of a letter."""
    return [char for char in text if unicodedata.category(char)[0] in ("L", "M")]


def script_share(text: str, lang: str) -> float:
    """Fraction of letters of `text` written in one of `lang`'s scripts (1.0 when there are no letters)."""
    text_letters = letters(text)
    if not text_letters:
        return 1.0
    allowed = expected_scripts(lang)
    return sum(script_of(char) in allowed for char in text_letters) / len(text_letters)


def looks_like_language_script(text: str, lang: str, min_share: float = 0.6) -> bool:
    """Whether `text` is written mostly in `lang`'s script(s).

    Japanese also has to contain kana when it has more than a few letters, so that Chinese is not taken for it.

    Args:
      text: the text to check.
      lang: language code.
      min_share: smallest accepted fraction of letters in the language's scripts.

    Returns:
      True if the script matches.
    """
    if script_share(text, lang) < min_share:
        return False
    if lang == "ja":
        text_letters = letters(text)
        has_kana = any(script_of(char) in ("Hiragana", "Katakana") for char in text_letters)
        return has_kana or len(text_letters) <= 4
    if lang == "zh":
        return not any(script_of(char) in ("Hiragana", "Katakana") for char in text)
    return True


def length_units(text: str, lang: str) -> int:
    """Length in words for spaced languages, in non-space characters for languages written without spaces."""
    if lang in UNSPACED_LANGS:
        return sum(1 for char in text if not char.isspace())
    return len(re.findall(r"\S+", text))


# How many length units (words, or characters in unspaced scripts) a language typically uses for one English
# word in parallel Wikipedia prose. Rough figures from parallel corpora; they only centre the ratio window.
UNITS_PER_ENGLISH_WORD: Mapping[str, float] = {
    "ja": 1.9, "zh": 1.5, "th": 4.0, "lo": 4.0, "km": 4.0, "my": 3.5, "bo": 3.5,
    "ko": 0.75, "fi": 0.75, "et": 0.8, "hu": 0.8, "tr": 0.8, "ar": 0.8, "he": 0.8, "ru": 0.85, "uk": 0.85,
    "bn": 0.85, "te": 0.7, "ta": 0.7, "ml": 0.65, "kn": 0.7, "de": 0.95, "es": 1.1, "fr": 1.1, "it": 1.05,
    "pt": 1.05,
}
