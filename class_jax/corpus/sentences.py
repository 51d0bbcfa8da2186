"""Language-aware sentence splitting that returns character spans, so link offsets map onto sentences.

Rules, not a trained model: Wikipedia prose in ~300 languages has no shared trained splitter, and the mining
pipeline only needs sentences good enough to serve as cloze queries. Splits happen at
  * paragraph breaks ("\\n"), always;
  * full-width / script-specific terminators that need no following space: 。！？ (ja, zh), । ॥ (danda: hi, bn,
    mr, ne, pa, sa, ...), ։ (hy), ። (am), ။ (my), ؟ and ۔ (ar, fa, ur);
  * "." "!" "?" "…" followed by whitespace and a plausible sentence start, unless the word before the dot is a
    known abbreviation of the language, a single letter (initials: "J. R. R. Tolkien"), or, in languages that
    write ordinals with a dot (de, fi, ...), a number ("am 3. Oktober").
Closing quotes and brackets right after a terminator stay with the sentence they close.
"""

import re
from typing import Iterator

# Terminators that end a sentence with no following whitespace needed.
_SCRIPT_TERMINATORS = "。！？!?｡।॥։።။؟۔"
# Terminators that need whitespace (or the end of the paragraph) after them.
_SPACED_TERMINATORS = ".!?…"
_CLOSERS = "\"'”’»›)]}」』）】〕〉》"
_OPENERS = "\"'“‘«‹([{「『（【〔〈《¿¡"

# Languages that write ordinal numbers as "3." ("am 3. Oktober", "3. lokakuuta").
_ORDINAL_DOT_LANGS = frozenset({"de", "fi", "da", "nb", "no", "nn", "sv", "is", "cs", "sk", "pl", "hu", "tr", "et",
                                "lv", "lt", "sl", "hr", "sr", "bs"})

# Lower-cased abbreviations without their final dot; internal dots are kept ("z.b", "e.g").
_COMMON_ABBREVIATIONS = frozenset({"ca", "cf", "vs", "etc", "no", "nr", "vol", "pp", "ed", "eds", "approx", "st"})
_ABBREVIATIONS: dict[str, frozenset[str]] = {
    "en": frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "gen", "col", "lt", "capt",
                     "sgt", "gov", "sen", "rep", "rev", "hon", "inc", "ltd", "co", "corp", "bros", "dept", "univ",
                     "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "e.g",
                     "i.e", "a.m", "p.m", "u.s", "u.k", "b.c", "a.d", "fig", "al", "est", "op", "no"}),
    "de": frozenset({"bzw", "z.b", "u.a", "d.h", "usw", "vgl", "dr", "prof", "hr", "fr", "jh", "jhd", "s", "sog",
                     "geb", "gest", "evtl", "ggf", "inkl", "mio", "mrd", "bspw", "o.ä", "u.ä", "v.a",
                     "v.chr", "n.chr", "chr", "str", "abs", "bd", "hl"}),
    "fr": frozenset({"m", "mm", "mme", "mlle", "dr", "st", "ste", "av", "apr", "env", "p", "cf", "coll", "hab",
                     "j.-c", "etc", "janv", "févr", "oct", "déc"}),
    "es": frozenset({"sr", "sra", "srta", "dr", "dra", "pág", "págs", "núm", "aprox", "av", "avda", "etc", "ej",
                     "a.c", "d.c", "ud", "uds", "gral", "sta", "sto"}),
    "it": frozenset({"sig", "sigg", "sig.ra", "dott", "prof", "ecc", "s", "ss", "pag", "a.c", "d.c", "avv", "on",
                     "geom", "ing", "arch"}),
    "fi": frozenset({"esim", "mm", "ns", "jne", "ym", "tri", "ks", "vrt", "eaa", "jaa", "ekr", "jkr", "milj", "mrd",
                     "prof", "yms"}),
    "ru": frozenset({"г", "гг", "т.е", "т.д", "т.п", "т.к", "им", "ул", "см", "др", "проф", "св", "ок", "тыс",
                     "млн", "млрд", "вв", "н.э", "род", "ум", "пр", "напр", "рис", "обл", "стр", "акад", "ген",
                     "кн"}),
}


def _abbreviations(lang: str) -> frozenset[str]:
    return _ABBREVIATIONS.get(lang, frozenset()) | _COMMON_ABBREVIATIONS


def _word_before(text: str, dot: int) -> str:
    """The token (letters, digits and internal dots) that ends right before `text[dot]`."""
    start = dot
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in ".-"):
        start -= 1
    return text[start:dot].lstrip(".-")


def _next_visible(text: str, position: int, limit: int) -> str:
    """The first non-space, non-opener character in text[position:limit] ('' if there is none)."""
    while position < limit and (text[position].isspace() or text[position] in _OPENERS):
        position += 1
    return text[position] if position < limit else ""


def _is_spaced_boundary(text: str, term_start: int, term_end: int, limit: int, lang: str) -> bool:
    """Whether the '.', '!', '?' or '…' run text[term_start:term_end] (closers included) ends a sentence."""
    if term_end < limit and not text[term_end].isspace():
        return False  # "3.14", "e.g.", "Yahoo!Japan": no space, no boundary.
    following = _next_visible(text, term_end, limit)
    if not following:
        return True
    if following.islower():
        return False  # A lower-case continuation is a sentence-internal dot in every cased script.
    if text[term_start] != ".":
        return True
    word = _word_before(text, term_start)
    if not word:
        return True
    if word.lower() in _abbreviations(lang):
        return False
    if len(word) == 1 and word.isalpha():
        return False  # An initial ("J. R. R. Tolkien") or a spaced abbreviation ("z. B.", "d. h.").
    if lang in _ORDINAL_DOT_LANGS and word.isdigit() and len(word) <= 2:
        return False  # "am 3. Oktober": day numbers; four-digit years still end sentences.
    return True


def _extend_over_closers(text: str, position: int) -> int:
    while position < len(text) and text[position] in _CLOSERS:
        position += 1
    return position


def _paragraph_sentence_ends(text: str, start: int, end: int, lang: str) -> Iterator[int]:
    """Yields the exclusive end offset of every sentence boundary inside text[start:end]."""
    position = start
    while position < end:
        char = text[position]
        if char in _SCRIPT_TERMINATORS and not (char in "!?" and lang not in ("ja", "zh")):
            run_end = position + 1
            while run_end < end and text[run_end] in _SCRIPT_TERMINATORS:
                run_end += 1
            closed = _extend_over_closers(text, run_end)
            # 「本当？」と言った: a terminator inside a quotation that the sentence goes on after is no boundary.
            if closed == run_end or closed >= end or text[closed].isspace():
                yield closed
            position = run_end
            continue
        if char in _SPACED_TERMINATORS:
            run_end = position + 1
            while run_end < end and text[run_end] in _SPACED_TERMINATORS:
                run_end += 1
            closed = _extend_over_closers(text, run_end)
            if _is_spaced_boundary(text, position, closed, end, lang):
                yield closed
            position = run_end
            continue
        position += 1


def split_sentences(text: str, lang: str) -> list[tuple[int, int]]:
    """Splits text into sentences.

    Args:
      text: clean text; paragraphs separated by "\\n".
      lang: Wikipedia language code; selects abbreviations and ordinal rules.

    Returns:
      (start, end) character spans into `text`, in order, without surrounding whitespace, never empty.
    """
    spans = []
    for paragraph in re.finditer(r"[^\n]+", text):
        sentence_start = paragraph.start()
        boundaries = list(_paragraph_sentence_ends(text, paragraph.start(), paragraph.end(), lang))
        for boundary in boundaries + [paragraph.end()]:
            segment = text[sentence_start:boundary]
            stripped = segment.strip()
            if stripped:
                left = sentence_start + (len(segment) - len(segment.lstrip()))
                spans.append((left, left + len(stripped)))
            sentence_start = boundary
    return spans


def ends_with_terminator(sentence: str) -> bool:
    """Whether a sentence ends like prose (a terminator, possibly followed by closing quotes or brackets)."""
    trimmed = sentence.rstrip().rstrip(_CLOSERS)
    return bool(trimmed) and trimmed[-1] in _SCRIPT_TERMINATORS + _SPACED_TERMINATORS
