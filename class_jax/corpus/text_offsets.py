"""Whitespace and residue normalisation of text that carries character spans.

The wikitext cleaner first emits raw text (runs of spaces, empty lines, "( )" left where templates were removed)
together with the spans of link anchors. This module rewrites the text into its final form and moves every span
with it, so that `text[start:end]` is exactly the anchor afterwards.
"""

import bisect
import re
from typing import Sequence

# Residue of removed markup: empty brackets, space before punctuation, space after an opening bracket. (The
# leading lookahead only lets the scan skip ahead to "(" or whitespace, where every alternative starts.)
_RESIDUE = re.compile(
    r"(?=[(\s])(?:"
    r"\((?:[\s,;:\u200e\u200f]|&nbsp;)*\)"
    r"|[ \t\u00a0\u2009]+(?=[.,;:!?)\]。、，．])"
    r"|(?<=\()[ \t\u00a0]+"
    r")"
)
# Whitespace runs that are not a single plain space (line breaks with their surroundings, runs of blanks, tabs,
# no-break spaces), matched whole. Written so that every alternative starts with one character class, which the
# regex engine scans for quickly; leading and trailing whitespace is handled apart.
_IRREGULAR_WHITESPACE = re.compile(r"[^\S ]\s*|\s\s+")


class _PieceMap:
    """Maps offsets of a source string to a rebuilt string made of kept source pieces.

    Args:
      pieces: (source start, source end, destination start) of each kept piece, in source order.
    """

    def __init__(self, pieces: Sequence[tuple[int, int, int]]):
        self._starts = [piece[0] for piece in pieces]
        self._pieces = pieces

    def map_char(self, position: int) -> int | None:
        """Destination offset of the source character at `position`, or None when it was dropped."""
        index = bisect.bisect_right(self._starts, position) - 1
        if index < 0:
            return None
        source_start, source_end, destination_start = self._pieces[index]
        if position >= source_end:
            return None
        return destination_start + position - source_start


def _map_spans(piece_map: _PieceMap, spans: Sequence[tuple[int, int] | None]) -> list[tuple[int, int] | None]:
    mapped: list[tuple[int, int] | None] = []
    for span in spans:
        new_start = new_last = None
        if span is not None:
            new_start = piece_map.map_char(span[0])
            new_last = piece_map.map_char(span[1] - 1)
        mapped.append(None if new_start is None or new_last is None else (new_start, new_last + 1))
    return mapped


def _remove_residue(text: str, spans: Sequence[tuple[int, int]]) -> tuple[str, _PieceMap]:
    protected = sorted(spans)
    protected_starts = [start for start, _ in protected]
    pieces: list[tuple[int, int, int]] = []
    output: list[str] = []
    cursor = 0
    length = 0
    for match in _RESIDUE.finditer(text):
        start, end = match.span()
        # Never delete inside an anchor: the span must stay exactly the anchor text.
        # Anchors are disjoint and sorted, so only the last one starting before `end` can overlap.
        index = bisect.bisect_left(protected_starts, end) - 1
        if index >= 0 and protected[index][1] > start:
            continue
        if start > cursor:
            pieces.append((cursor, start, length))
            output.append(text[cursor:start])
            length += start - cursor
        cursor = end
    if cursor < len(text):
        pieces.append((cursor, len(text), length))
        output.append(text[cursor:])
    return "".join(output), _PieceMap(pieces)


def _collapse_whitespace(text: str) -> tuple[str, _PieceMap]:
    # Only irregular whitespace is touched (single spaces are the vast majority and stay as they are), so the
    # number of pieces is the number of irregularities, not the number of words.
    pieces: list[tuple[int, int, int]] = []
    output: list[str] = []
    cursor = len(text) - len(text.lstrip())  # leading and trailing whitespace goes entirely
    stop = len(text.rstrip())
    length = 0
    if cursor < stop:
        for match in _IRREGULAR_WHITESPACE.finditer(text, cursor, stop):
            start, end = match.span()
            if start > cursor:
                pieces.append((cursor, start, length))
                output.append(text[cursor:start])
                length += start - cursor
            cursor = end
            output.append("\n" if "\n" in match.group() else " ")
            length += 1
        pieces.append((cursor, stop, length))
        output.append(text[cursor:stop])
    return "".join(output), _PieceMap(pieces)


def normalize_with_spans(text: str, spans: Sequence[tuple[int, int]]) -> tuple[str, list[tuple[int, int] | None]]:
    """Collapses whitespace, drops empty lines and markup residue, and moves spans along.

    Lines are kept (one paragraph, heading or list item per line); inside a line every whitespace run becomes one
    space. Spans are first trimmed of surrounding whitespace.

    Args:
      text: the raw text.
      spans: (start, end) character spans into `text`.

    Returns:
      (normalised text, the spans moved into it); a span that was all whitespace becomes None.
    """
    trimmed: list[tuple[int, int] | None] = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        trimmed.append((start, end) if start < end else None)
    without_residue, residue_map = _remove_residue(text, [span for span in trimmed if span is not None])
    collapsed, whitespace_map = _collapse_whitespace(without_residue)
    return collapsed, _map_spans(whitespace_map, _map_spans(residue_map, trimmed))
