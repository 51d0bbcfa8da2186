"""Splitting articles into 100-word passages (the DPR "w100" convention) that keep their links.

DPR cut each article's text into consecutive, non-overlapping blocks of 100 words regardless of paragraph
boundaries, and paired each block with the article title. We do the same, with two refinements:
  * a block never cuts through a link anchor (the cut moves to the end of the anchor), so every link lands whole
    in exactly one passage;
  * scripts written without spaces (Japanese, Chinese, Thai, ...) count characters instead of words
    (`LanguageProfile.char_units`, 150 characters by default).
Passage text is an exact slice of the article text with newlines turned into spaces (same length), so a link's
passage span is its article span minus the passage start.
"""

import bisect
import functools
import re
from typing import Iterator

from class_jax.corpus.types import Article, Link, Passage

_WORD = re.compile(r"\S+")
# One unit per character of scripts without word spaces; runs of anything else count as words.
_SPACELESS_SCRIPTS = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
)
_CHAR_UNIT = re.compile(rf"[{_SPACELESS_SCRIPTS}]|[^\s{_SPACELESS_SCRIPTS}]+")


def passage_id(lang: str, page_id: int, index: int) -> str:
    """The stable id of the `index`-th passage of a page: "{lang}:{page_id}:{index}"."""
    return f"{lang}:{page_id}:{index}"


def split_passages(article: Article, units_per_passage: int = 100, char_units: bool = False) -> list[Passage]:
    """Cuts an article into passages of about `units_per_passage` words (or characters).

    Args:
      article: the clean article.
      units_per_passage: words (or characters with `char_units`) per passage; the last passage may be shorter
        and a passage grows by the rest of an anchor it would otherwise cut.
      char_units: count characters of space-less scripts instead of words.

    Returns:
      The passages in text order, each with the links inside it (spans relative to the passage text).

    Raises:
      ValueError: units_per_passage is not positive.
    """
    if units_per_passage <= 0:
        raise ValueError(f"units_per_passage must be positive, got {units_per_passage}")
    text = article.text
    block, unit, run = _patterns(units_per_passage, char_units)
    link_starts = [link.start for link in article.links]
    passages: list[Passage] = []
    link_index = 0
    position = 0
    while True:
        # One match is one block: the next `units_per_passage` units (fewer at the end of the text).
        match = block.search(text, position)
        if match is None:
            return passages
        start, end = match.span()
        # Extend past any link whose anchor starts inside the block but ends after it, to the end of the unit
        # that holds the anchor's last character.
        covering = bisect.bisect_left(link_starts, end) - 1
        if covering >= 0 and article.links[covering].end > end:
            end = _end_of_unit(text, article.links[covering].end, unit, run)
        links, link_index = _links_inside(article.links, link_index, start, end)
        passages.append(Passage(
            passage_id=passage_id(article.lang, article.page_id, len(passages)), lang=article.lang,
            title=article.title, text=text[start:end].replace("\n", " "), links=links))
        position = end


@functools.lru_cache(maxsize=16)
def _patterns(units_per_passage: int, char_units: bool) -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """(a block of up to `units_per_passage` units, one unit, the part of a unit that can follow any character)."""
    unit = _CHAR_UNIT if char_units else _WORD
    gap = r"\s*" if char_units else r"\s+"
    block = re.compile(rf"(?:{unit.pattern})(?:{gap}(?:{unit.pattern})){{0,{units_per_passage - 1}}}")
    # A unit continues through these characters (a word: any non-space; a run: non-space, non-space-less-script).
    run = re.compile(rf"[^\s{_SPACELESS_SCRIPTS}]*" if char_units else r"\S*")
    return block, unit, run


def _end_of_unit(text: str, position: int, unit: re.Pattern, run: re.Pattern) -> int:
    """End of the first unit that ends at or after `position` (or `position` when no unit does).

    Units are maximal matches of `unit`, as `unit.finditer(text)` yields them.
    """
    previous = text[position - 1] if position > 0 else " "
    if not previous.isspace():
        # The character before `position` belongs to a unit: it goes on through `run` characters, unless it is
        # a unit by itself (a character of a space-less script).
        if run.fullmatch(previous):
            return run.match(text, position).end()
        return position
    following = unit.search(text, position)
    return following.end() if following is not None else position


def _links_inside(links: tuple[Link, ...], first: int, start: int, end: int) -> tuple[tuple[Link, ...], int]:
    """Links within [start, end), shifted to passage offsets, and the index of the first link after them."""
    inside = []
    index = first
    while index < len(links) and links[index].start < end:
        link = links[index]
        if link.start >= start and link.end <= end:
            inside.append(Link(start=link.start - start, end=link.end - start, anchor=link.anchor,
                               target=link.target))
        index += 1
    return tuple(inside), index


def passages_of_articles(articles: Iterator[Article], units_per_passage: int = 100,
                         char_units: bool = False) -> Iterator[Passage]:
    """Passages of many articles, in order (see `split_passages`)."""
    for article in articles:
        yield from split_passages(article, units_per_passage, char_units)
