"""Wikitext -> clean text with exact link spans, using mwparserfromhell's tokenizer and a lean tree (`wikitext_tree`).

What is kept: prose, headings and list items (one per line), the visible text of links, bold/italic text, the
text of a few inline templates that print words (`{{lang|fr|...}}`, `{{nowrap|...}}`, `{{convert|...}}`).
What is removed: templates and infoboxes, `<ref>` and references lists, tables, files/images with their
captions, categories, interlanguage links, comments, math, galleries, and whole sections such as "References"
or "External links" (per language, see `wiki_languages`).

Every article link in the kept text becomes a `Link` whose span is exact after whitespace normalisation
(`text[start:end] == anchor`). Links that do not make it are counted by reason, so that kept + dropped equals
all `[[...]]` links of the page.
"""

import collections
import dataclasses
import html
import re
from typing import Callable

from mwparserfromhell import definitions

from class_jax.corpus import text_offsets
from class_jax.corpus import wikitext_tree as wt
from class_jax.corpus.titles import LinkKind, LinkTarget, NamespaceTable, RedirectTable
from class_jax.corpus.types import Link
from class_jax.corpus.wiki_languages import LanguageProfile

# Tags whose content is not prose (or not text at all).
_DROPPED_TAGS = frozenset({
    "ref", "references", "gallery", "math", "chem", "ce", "score", "timeline", "graph", "mapframe", "maplink",
    "templatestyles", "syntaxhighlight", "source", "pre", "imagemap", "hiero", "categorytree", "inputbox",
    "charinsert", "indicator", "includeonly", "table", "caption", "noinclude", "langconvert", "poem-meta",
})
# Tags that start a new line (wiki list markup comes as self-closing tags followed by the item's text).
_LINE_TAGS = frozenset({"li", "dt", "dd", "br", "hr", "p", "div", "blockquote", "ul", "ol", "dl", "center"})
_MAGIC_WORD = re.compile(r"__[A-ZÀ-ÖØ-ÞА-ЯЁ_]{3,}__")
# (The leading lookahead lets the scan skip ahead to the characters every alternative starts with.)
_STRAY_MARKUP = re.compile(r"(?=['\[\]{}|<])(?:'{2,}|\[\[|\]\]|\{\{|\}\}|\{\||\|\}|</?ref\b[^>\n]*>)", re.IGNORECASE)
_RESIDUE_CHECK = re.compile(r"\{\{|\}\}|\[\[|\]\]|<ref|</ref|<!--|\{\||\|\}|''")
_CONVERT_JOINERS = frozenset({"-", "–", "to", "and", "or", "by", "x", "×", "&", "+"})
_DISAMBIG_MAGIC = "__DISAMBIG__"
# Link targets classified per cleaner, remembered up to this many distinct targets (then forgotten at once).
_TARGET_CACHE_SIZE = 1 << 16
# Templates that print a link which is not written as `[[...]]` in the source.
_LINK_PRINTING_TEMPLATES = frozenset({"ill", "interlanguage link", "illm"})
# Footnotes, found as MediaWiki's preprocessor finds extension tags (up to the first closing tag, in any case),
# and the spans in which the tokenizer would not see them: closed comments and the tags whose contents it does not
# parse (its PARSER_BLACKLIST: nowiki, pre, math, ...), which are left as they are. `_empty_footnotes` scans for
# the openings and looks for each closing once, so that unclosed ones cost linear time, not quadratic.
_FOOTNOTE_OPENING = re.compile(
    rf"<(?:!--|({'|'.join(map(re.escape, definitions.PARSER_BLACKLIST))}|ref|references)(?=[\s/>]))",
    re.IGNORECASE)
_FOOTNOTE_NAMES = frozenset({"ref", "references"})
# Tags, opening and closing, as the tokenizer may read them (a superset: only the names matter here).
_TAG_OPENING = re.compile(r"<([A-Za-z][A-Za-z0-9]*)(?=[\s/>])")
_TAG_CLOSING = re.compile(r"</\s*([A-Za-z][A-Za-z0-9]*)(?![A-Za-z0-9])")
# An unclosed `<ref ...>` left as text, which `_clean_plain` would strip (see _STRAY_MARKUP).
_UNCLOSED_REF = re.compile(r"<ref\b[^>\n]*>", re.IGNORECASE)
# Tags the tokenizer closes implicitly (so an opening without a closing tag is not a failed parse).
_IMPLICITLY_CLOSED = frozenset(definitions.SINGLE)


@dataclasses.dataclass(frozen=True)
class CleanedPage:
    """The result of cleaning one page's wikitext.

    Attributes:
      text: clean text, one paragraph (or heading, or list item) per line.
      links: article links inside `text`, in text order, with exact spans.
      interlanguage: legacy inline interlanguage links `[[xx:Title]]` as (language, title).
      categories: category names the page is in.
      templates: lower-case names of the page's top-level templates (for page classification).
      counts: link counts by fate: links_seen (every `[[...]]` in the page) + links_template_generated
        (links printed by templates such as `{{ill|...}}`) = links_kept + links_category +
        links_file + links_interlanguage + links_other_namespace + links_interwiki + links_section_only +
        links_empty_anchor + links_malformed_anchor + links_nested + links_in_removed_markup; also
        links_via_redirect.
      has_markup_residue: markup characters survived cleaning (counted by the ingester, never expected).
    """

    text: str
    links: tuple[Link, ...]
    interlanguage: tuple[tuple[str, str], ...]
    categories: tuple[str, ...]
    templates: frozenset[str]
    counts: collections.Counter
    has_markup_residue: bool


class _Output:
    """Raw text under construction, with link spans recorded against it."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.length = 0
        self.links: list[tuple[int, int, str]] = []

    def add(self, text: str) -> None:
        if text:
            self.pieces.append(text)
            self.length += len(text)

    def newline(self) -> None:
        self.add("\n")

    def text(self) -> str:
        return "".join(self.pieces)


def _template_name(template: wt.Template) -> str:
    name = " ".join(wt.source(template.name).replace("_", " ").split()).lower()
    return name[len("template:"):].strip() if name.startswith("template:") else name


def _positional(template: wt.Template, index: int) -> wt.Code | None:
    param = template.get(str(index))
    return param.value if param is not None else None


class WikitextCleaner:
    """Cleans the wikitext of one wiki's pages.

    Args:
      namespaces: the wiki's namespace table (from its dump's siteinfo).
      profile: the language's conventions (dropped sections, link trail).
      redirects: when given, link targets are resolved through it.
    """

    def __init__(self, namespaces: NamespaceTable, profile: LanguageProfile,
                 redirects: RedirectTable | None = None):
        self.namespaces = namespaces
        self._targets: dict[str, LinkTarget] = {}
        self.profile = profile
        self.redirects = redirects
        self._link_trail = re.compile(profile.link_trail) if profile.link_trail else None
        self._text_templates: dict[str, Callable[[wt.Template], list[wt.Code | str]]] = {
            **{name: self._first_param for name in (
                "nowrap", "nobr", "nobreak", "small", "smaller", "big", "larger", "abbr", "nihongo", "keypress",
                "vanchor", "visible anchor", "em", "strong", "linktext", "sup", "sub")},
            "lang": self._lang_text, "transl": self._last_param, "transliteration": self._last_param,
            "convert": self._convert, "cvt": self._convert, "ill": self._interlanguage_fallback,
            "interlanguage link": self._interlanguage_fallback, "illm": self._interlanguage_fallback,
            "'": lambda _: ["'"], "'s": lambda _: ["'s"], "ndash": lambda _: ["–"], "mdash": lambda _: ["—"],
            "snd": lambda _: [" – "], "spaced ndash": lambda _: [" – "], "!": lambda _: ["|"],
            "=": lambda _: ["="], "circa": lambda t: ["c. ", *self._first_param(t)],
        }

    def clean(self, wikitext: str) -> CleanedPage:
        """Cleans one page.

        Args:
          wikitext: the page's source.

        Returns:
          The clean text, its links and the link counts.
        """
        wikitext, links_in_footnotes = _empty_footnotes(unescape_if_double_escaped(wikitext))
        code, links_seen = wt.parse(_neutralize_unclosed_tags(wikitext))
        counts: collections.Counter = collections.Counter()
        counts["links_seen"] = links_seen + links_in_footnotes
        state = _PageState()
        output = _Output()
        self._emit(code, output, counts, state, in_link=False)
        raw_text = output.text()
        text, spans = text_offsets.normalize_with_spans(raw_text, [(s, e) for s, e, _ in output.links])
        links: list[Link] = []
        for span, (_, _, target) in zip(spans, output.links):
            if span is None:
                counts["links_empty_anchor"] += 1
                continue
            start, end = span
            if "\n" in text[start:end]:
                # Only unbalanced markup makes an anchor run across paragraphs; its "anchor" is not one.
                counts["links_malformed_anchor"] += 1
                continue
            links.append(Link(start=start, end=end, anchor=text[start:end], target=target))
        counts["links_kept"] = len(links)
        visited = sum(value for key, value in counts.items()
                      if key not in ("links_seen", "links_via_redirect", "links_template_generated"))
        counts["links_in_removed_markup"] = counts["links_seen"] + counts["links_template_generated"] - visited
        templates = frozenset(_template_name(node) for node in code if type(node) is wt.Template)
        if _DISAMBIG_MAGIC in wikitext:
            templates |= {_DISAMBIG_MAGIC.lower()}
        return CleanedPage(text=text, links=tuple(links), interlanguage=tuple(state.interlanguage),
                           categories=tuple(state.categories), templates=templates, counts=counts,
                           has_markup_residue=_RESIDUE_CHECK.search(text) is not None)

    # -- traversal ---------------------------------------------------------------------------------------------

    def _emit(self, code: wt.Code | str, output: _Output, counts: collections.Counter, state: "_PageState",
              in_link: bool) -> None:
        """Appends the visible text of `code` to `output`, recording article links unless inside a link.

        `code` is a node list, or a string printed as it is (text nodes inside lists are cleaned of stray markup).
        """
        if isinstance(code, str):
            output.add(code)
            return
        nodes = code
        skipped_level: int | None = None
        index = 0
        count = len(nodes)
        while index < count:
            node = nodes[index]
            index += 1
            kind = type(node)
            if kind is wt.Heading:
                if skipped_level is not None and node.level > skipped_level:
                    continue
                skipped_level = None
                heading = " ".join(wt.strip_code(node.title).split()).casefold()
                if heading in self.profile.dropped_sections:
                    skipped_level = node.level
                    continue
                output.newline()
                self._emit(node.title, output, counts, state, in_link)
                output.newline()
            elif skipped_level is not None:
                # Sections such as "External links" are dropped, but categories and interlanguage links at the
                # end of the page sit inside the last section and must still be recorded.
                if kind is wt.Wikilink:
                    self._record_page_link(self._classify(_plain(node.title)), counts, state)
                continue
            elif kind is str:
                output.add(_clean_plain(node))
            elif kind is wt.Wikilink:
                following = nodes[index] if index < count else None
                trail = self._emit_link(node, following, output, counts, state, in_link)
                if trail:
                    output.add(_clean_plain(following[trail:]))
                    index += 1
            elif kind is wt.Tag:
                self._emit_tag(node, output, counts, state, in_link)
            elif kind is wt.Template:
                name = _template_name(node)
                handler = self._text_templates.get(name)
                if handler is None and name.startswith("lang-"):
                    handler = self._first_param
                for part in handler(node) if handler else ():
                    if name in _LINK_PRINTING_TEMPLATES and not isinstance(part, str):
                        counts["links_template_generated"] += len(wt.filter_wikilinks(part))
                    self._emit(part, output, counts, state, in_link)
            elif kind is wt.ExternalLink:
                if node.brackets and node.title is not None:
                    self._emit(node.title, output, counts, state, in_link)
            elif kind is wt.HTMLEntity:
                output.add(node.normalize())
            # Comments and template arguments ({{{1}}}) print nothing.

    def _emit_tag(self, node: wt.Tag, output: _Output, counts: collections.Counter,
                  state: "_PageState", in_link: bool) -> None:
        tag = wt.source(node.tag).strip().lower()
        if tag in _DROPPED_TAGS:
            return
        if tag == "nowiki":
            output.add(html.unescape(wt.source(node.contents)))
            return
        starts_line = tag in _LINE_TAGS
        if starts_line:
            output.newline()
        if not node.self_closing:
            self._emit(node.contents, output, counts, state, in_link)
            if starts_line:
                output.newline()

    def _emit_link(self, node: wt.Wikilink, following: object, output: _Output,
                   counts: collections.Counter, state: "_PageState", in_link: bool) -> int:
        """Emits one `[[...]]` link.

        Returns:
          How many characters of the following text node were taken as link trail (0 if none).
        """
        written = _plain(node.title)
        target = self._classify(written)
        if self._record_page_link(target, counts, state):
            return 0
        shown = node.text
        if target.kind is not LinkKind.ARTICLE:
            counts["links_interwiki" if target.kind is LinkKind.INTERWIKI else "links_other_namespace"] += 1
            self._emit(shown if shown is not None else written.lstrip(": "), output, counts, state, True)
            return 0
        if not target.title:
            counts["links_section_only"] += 1
            self._emit(shown if shown is not None else written.lstrip("#"), output, counts, state, True)
            return 0
        start = output.length
        if shown is None and any(type(part) is wt.Tag for part in node.title):
            self._emit(node.title, output, counts, state, True)  # e.g. [[Title with ''italic'' words]]
        elif shown is None:
            output.add(written.strip().lstrip(":").strip())
        elif not wt.source(shown).strip():
            output.add(_pipe_trick(written))
        else:
            self._emit(shown, output, counts, state, True)
        trail = 0
        if self._link_trail is not None and type(following) is str:
            match = self._link_trail.match(following)
            if match:
                trail = match.end()
                output.add(match.group())
        if in_link:
            counts["links_nested"] += 1
            return trail
        resolved = target.title
        if self.redirects is not None:
            final = self.redirects.resolve(target.title)
            if final is not None and final != target.title:
                counts["links_via_redirect"] += 1
                resolved = final
        output.links.append((start, output.length, resolved))
        return trail

    def _classify(self, written: str) -> LinkTarget:
        """`namespaces.classify`, remembered: the same targets recur across links and pages."""
        target = self._targets.get(written)
        if target is None:
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            target = self._targets[written] = self.namespaces.classify(written)
        return target

    def _record_page_link(self, target: LinkTarget, counts: collections.Counter, state: "_PageState") -> bool:
        """Handles links that print nothing (files, categories, interlanguage links), given the link's target.

        Returns:
          Whether the link was one of those.
        """
        if target.leading_colon or target.kind not in (LinkKind.FILE, LinkKind.CATEGORY, LinkKind.INTERLANGUAGE):
            return False
        counts[f"links_{target.kind.value}"] += 1
        if target.kind is LinkKind.CATEGORY:
            state.categories.append(target.title)
        elif target.kind is LinkKind.INTERLANGUAGE:
            state.interlanguage.append((target.prefix, target.title))
        return True

    # -- inline templates that print text ------------------------------------------------------------------------

    @staticmethod
    def _first_param(template: wt.Template) -> list[wt.Code | str]:
        value = _positional(template, 1)
        return [value] if value is not None else []

    @staticmethod
    def _last_param(template: wt.Template) -> list[wt.Code | str]:
        positional = [param.value for param in template.params if not param.showkey]
        return positional[-1:]

    @staticmethod
    def _lang_text(template: wt.Template) -> list[wt.Code | str]:
        value = _positional(template, 2)
        return [value] if value is not None else []

    @staticmethod
    def _convert(template: wt.Template) -> list[wt.Code | str]:
        values = [_plain(param.value).strip() for param in template.params if not param.showkey]
        if len(values) >= 4 and values[1] in _CONVERT_JOINERS:
            return [f"{values[0]} {values[1]} {values[2]} {values[3]}"]
        if len(values) >= 2:
            return [f"{values[0]} {values[1]}"]
        return values[:1]

    @staticmethod
    def _interlanguage_fallback(template: wt.Template) -> list[wt.Code | str]:
        # {{ill|Local title|de|Foreign title|lt=shown}} renders as a (possibly red) local link.
        local = _positional(template, 1)
        if local is None:
            return []
        shown = template.get("lt")
        shown = shown.value if shown is not None else local
        return [wt.parse(f"[[{_plain(local).strip()}|{wt.source(shown)}]]")[0]]


@dataclasses.dataclass
class _PageState:
    categories: list[str] = dataclasses.field(default_factory=list)
    interlanguage: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _empty_footnotes(wikitext: str) -> tuple[str, int]:
    """Replaces every `<ref>` and `<references>` element by an empty one, before tokenizing.

    The cleaner drops footnotes whole, yet they hold about a quarter of an article's wikitext and take two fifths
    of its tokenizing time (citation templates). An empty element of the same name stays in their place, so the
    markup around them parses as before (bold, a footnote, bold does not become six quotes).

    Time is linear in the length of the page: the closing tag (or `-->`) of each kind is looked for from an
    opening on, and once none is found, no later opening of that kind is looked at again (it cannot close either).

    Args:
      wikitext: page source.

    Returns:
      (the source with empty footnotes, the `[[...]]` links the footnotes held, counted as the tree counts them).
    """
    if "<" not in wikitext:
        return wikitext, 0
    links = 0
    pieces: list[str] = []
    copied = 0  # wikitext[:copied] is in pieces
    position = 0
    unclosable: set[str] = set()  # kinds ("!--" or a lower-case tag name) with no closing after some opening
    closings: dict[str, re.Pattern] = {}
    length = len(wikitext)
    while position < length:
        opening = _FOOTNOTE_OPENING.search(wikitext, position)
        if opening is None:
            break
        name = opening.group(1)
        kind = "!--" if name is None else name.lower()
        position = opening.start() + 1  # where the scan goes on when this opening does not make an element
        if kind in unclosable:
            continue
        if name is None:
            close = wikitext.find("-->", opening.end())
            if close < 0:
                unclosable.add(kind)
                continue
            position = close + 3
            continue  # comments are left as they are
        head_end = wikitext.find(">", opening.end())
        if head_end < 0:
            unclosable.add(">")
            break  # no tag can be complete any more
        if wikitext[head_end - 1] == "/" and head_end - 1 >= opening.end():
            end = head_end + 1  # self-closing
        else:
            closing = closings.get(kind)
            if closing is None:
                closing = closings[kind] = re.compile(rf"</{re.escape(kind)}\s*>", re.IGNORECASE)
            match = closing.search(wikitext, head_end + 1)
            if match is None:
                unclosable.add(kind)
                continue
            end = match.end()
        position = end
        if kind not in _FOOTNOTE_NAMES:
            continue  # a tag whose contents are not wikitext: left as it is
        element = wikitext[opening.start():end]
        if "[[" in element:
            links += wt.parse(element)[1]
        pieces.append(wikitext[copied:opening.start()])
        pieces.append(f"<{name}/>")
        copied = end
    if not pieces:
        return wikitext, links
    pieces.append(wikitext[copied:])
    return "".join(pieces), links


def _neutralize_unclosed_tags(wikitext: str) -> str:
    """Turns tags that cannot be closed into the text they would print, before tokenizing.

    mwparserfromhell's tokenizer reads an opening tag's contents up to the end of the page before it gives up on
    an unclosed tag and takes `<` as text; many unclosed tags (20,000 `<ref>`s in one hostile page) make that
    quadratic. An opening tag with no closing tag of its name anywhere after it can never be closed, so its `<` is
    written as `&lt;` (which prints the same `<`), and an unclosed `<ref ...>` is removed (as `_clean_plain` would
    remove its text). Tags the tokenizer closes implicitly (`<li>`, `<br>`, ...) are left alone. Linear time.

    Args:
      wikitext: page source (after `_empty_footnotes`).

    Returns:
      The source, with the same clean text and links as before but no unclosable tags.
    """
    if "<" not in wikitext:
        return wikitext
    last_closing: dict[str, int] = {}
    for closing in _TAG_CLOSING.finditer(wikitext):
        last_closing[closing.group(1).lower()] = closing.start()
    pieces: list[str] = []
    copied = 0
    next_bracket = -1  # the first ">" at or after the current opening (-1: not looked for yet)
    for opening in _TAG_OPENING.finditer(wikitext):
        name = opening.group(1).lower()
        if name in _IMPLICITLY_CLOSED or last_closing.get(name, -1) > opening.start():
            continue
        start = opening.start()
        if start < copied:
            continue
        if next_bracket < opening.end() and next_bracket != len(wikitext):
            next_bracket = wikitext.find(">", opening.end())
            if next_bracket < 0:
                next_bracket = len(wikitext)
        if next_bracket < len(wikitext) and wikitext[next_bracket - 1] == "/" and next_bracket > opening.end():
            continue  # self-closing: `<references/>`, `<ref name=x />`
        pieces.append(wikitext[copied:start])
        ref = _UNCLOSED_REF.match(wikitext, start) if name == "ref" else None
        if ref is not None:
            copied = ref.end()
        else:
            pieces.append("&lt;")
            copied = start + 1
    if pieces:
        pieces.append(wikitext[copied:])
        wikitext = "".join(pieces)
    # The same for comments: a `<!--` after the last `-->` is text to the tokenizer, found after a scan to the end.
    last_comment_end = wikitext.rfind("-->")
    unclosed_comment = wikitext.find("<!--", last_comment_end + 1 if last_comment_end >= 0 else 0)
    if unclosed_comment >= 0 and wikitext.find("-->", unclosed_comment + 4) < 0:
        wikitext = wikitext[:unclosed_comment] + wikitext[unclosed_comment:].replace("<!--", "&lt;!--")
    return wikitext


def unescape_if_double_escaped(wikitext: str) -> str:
    """Undoes one level of XML escaping when a whole page was stored escaped (`&lt;ref&gt;` and no `<`).

    Wikitext copied out of an XML dump without unescaping shows its markup as entities; MediaWiki would print
    them literally, but no real page is written that way, so one level of escaping is removed.

    Args:
      wikitext: page source.

    Returns:
      The source, unescaped once if it looked double-escaped.
    """
    if "<" in wikitext or "&lt;" not in wikitext:
        return wikitext
    for entity, character in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&amp;", "&")):
        wikitext = wikitext.replace(entity, character)
    return wikitext


def _plain(code: wt.Code | str) -> str:
    """The literal text of a title-like fragment: text, entities and style quotes; no comments or templates."""
    if isinstance(code, str):
        return html.unescape(code)
    parts = []
    for node in code:
        kind = type(node)
        if kind is str:
            parts.append(node)
        elif kind is wt.HTMLEntity:
            parts.append(node.normalize())
        elif kind is wt.Tag and node.wiki_markup:
            parts.append(node.source())  # '' and ''' are title characters when they appear inside a link target.
    return "".join(parts)


def _clean_plain(text: str) -> str:
    """Removes magic words and unbalanced markup that the parser left as plain text."""
    if "__" in text:
        text = _MAGIC_WORD.sub("", text)
    return _STRAY_MARKUP.sub("", text)


def _pipe_trick(written: str) -> str:
    """`[[Boston, Massachusetts|]]` shows "Boston"; `[[Pipe (computing)|]]` shows "Pipe"."""
    shown = written.strip().lstrip(":")
    if ":" in shown:
        shown = shown.split(":", 1)[1]
    shown = re.sub(r"\s*\([^()]*\)\s*$", "", shown)
    return shown.split(",")[0].strip()
