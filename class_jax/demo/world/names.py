"""Invented names that read naturally in every demo language and script.

A name is a sequence of syllables (consonant + vowel, optionally closed by "n"), written once in Latin letters
and transliterated syllable by syllable into Katakana, Hangul, Cyrillic and Arabic script, the way real
Wikipedias transliterate foreign names. So "Kesonda Tamura" becomes ケソンダ・タムラ, 케손다 타무라,
Кесонда Тамура and كيسوندا تامورا: the same entity has a recognisably related surface form in every language,
as real cross-language titles do, but the scripts differ so a model must learn the correspondence.
"""

import dataclasses
import random

CONSONANTS = ("k", "s", "t", "n", "m", "r", "b", "d", "g", "h", "p", "")
VOWELS = ("a", "i", "u", "e", "o")

_KATAKANA_ROWS = {
    "": "アイウエオ", "k": "カキクケコ", "s": "サシスセソ", "t": "タチツテト", "n": "ナニヌネノ", "m": "マミムメモ",
    "r": "ラリルレロ", "b": "バビブベボ", "g": "ガギグゲゴ", "h": "ハヒフヘホ", "p": "パピプペポ",
}
_KATAKANA_D = {"a": "ダ", "i": "ディ", "u": "ドゥ", "e": "デ", "o": "ド"}
# Hangul jamo indices: initial consonants, vowels (a, i, u, e, o) and the final "n".
_HANGUL_INITIAL = {"k": 15, "g": 0, "n": 2, "d": 3, "r": 5, "m": 6, "b": 7, "s": 9, "": 11, "t": 16, "p": 17,
                   "h": 18}
_HANGUL_VOWEL = {"a": 0, "i": 20, "u": 13, "e": 5, "o": 8}
_HANGUL_FINAL_N = 4
_CYRILLIC = {"k": "к", "s": "с", "t": "т", "n": "н", "m": "м", "r": "р", "b": "б", "d": "д", "g": "г", "h": "х",
             "p": "п", "": "", "a": "а", "i": "и", "u": "у", "e": "е", "o": "о"}
_ARABIC_CONSONANT = {"k": "ك", "s": "س", "t": "ت", "n": "ن", "m": "م", "r": "ر", "b": "ب", "d": "د", "g": "ج",
                     "h": "ه", "p": "ب"}
_ARABIC_VOWEL = {"a": "ا", "i": "ي", "u": "و", "e": "ي", "o": "و"}
_ARABIC_INITIAL_VOWEL = {"a": "أ", "i": "إي", "u": "أو", "e": "إي", "o": "أو"}

SCRIPTS = ("latin", "katakana", "hangul", "cyrillic", "arabic")


@dataclasses.dataclass(frozen=True)
class Syllable:
    """One syllable: consonant ("" for none), vowel, and whether it is closed by "n"."""

    consonant: str
    vowel: str
    final_n: bool = False


@dataclasses.dataclass(frozen=True)
class Name:
    """A word made of syllables, renderable in every script."""

    syllables: tuple[Syllable, ...]

    def render(self, script: str) -> str:
        """The name in a script ("latin", "katakana", "hangul", "cyrillic", "arabic")."""
        if script == "latin":
            return "".join(s.consonant + s.vowel + ("n" if s.final_n else "") for s in self.syllables).capitalize()
        if script == "katakana":
            return "".join(_katakana(s) for s in self.syllables)
        if script == "hangul":
            return "".join(_hangul(s) for s in self.syllables)
        if script == "cyrillic":
            word = "".join(_CYRILLIC[s.consonant] + _CYRILLIC[s.vowel] + ("н" if s.final_n else "")
                           for s in self.syllables)
            return word[:1].upper() + word[1:]
        if script == "arabic":
            return "".join(_arabic(s, first=index == 0) for index, s in enumerate(self.syllables))
        raise ValueError(f"unknown script {script!r}")


def _katakana(syllable: Syllable) -> str:
    if syllable.consonant == "d":
        kana = _KATAKANA_D[syllable.vowel]
    else:
        kana = _KATAKANA_ROWS[syllable.consonant][VOWELS.index(syllable.vowel)]
    return kana + ("ン" if syllable.final_n else "")


def _hangul(syllable: Syllable) -> str:
    final = _HANGUL_FINAL_N if syllable.final_n else 0
    code = 0xAC00 + (_HANGUL_INITIAL[syllable.consonant] * 21 + _HANGUL_VOWEL[syllable.vowel]) * 28 + final
    return chr(code)


def _arabic(syllable: Syllable, first: bool) -> str:
    if syllable.consonant:
        text = _ARABIC_CONSONANT[syllable.consonant] + _ARABIC_VOWEL[syllable.vowel]
    elif first:
        text = _ARABIC_INITIAL_VOWEL[syllable.vowel]
    else:
        text = "ئ" + _ARABIC_VOWEL[syllable.vowel]
    return text + ("ن" if syllable.final_n else "")


class NameMaker:
    """Draws distinct names from a seeded random generator.

    Args:
      rng: the generator (the caller's, so that the whole world depends on one seed).
    """

    def __init__(self, rng: random.Random):
        self._rng = rng
        self._used: set[tuple[str, str]] = set()

    def _syllable(self, first: bool) -> Syllable:
        consonant = self._rng.choice(CONSONANTS if first else CONSONANTS[:-1])
        return Syllable(consonant, self._rng.choice(VOWELS), final_n=self._rng.random() < 0.18)

    def make(self, min_syllables: int = 2, max_syllables: int = 3) -> Name:
        """A name not drawn before, in any script.

        Arabic script merges e/i, o/u and p/b, so two Latin names can share one Arabic spelling; such a name
        would make two pages with one title, and is drawn again.
        """
        while True:
            count = self._rng.randint(min_syllables, max_syllables)
            name = Name(tuple(self._syllable(first=index == 0) for index in range(count)))
            spellings = {(script, name.render(script).lower()) for script in SCRIPTS}
            # Avoid doubled "nn" ("Kan" + "na..."), which transliterations render inconsistently.
            if not spellings & self._used and "nn" not in name.render("latin").lower():
                self._used |= spellings
                return name
