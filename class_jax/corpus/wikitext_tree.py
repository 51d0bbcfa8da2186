"""A lean parse tree of wikitext: mwparserfromhell's tokenizer, a lighter tree than its `Wikicode`.

mwparserfromhell tokenizes in C, but builds its tree in Python through property setters that re-check every value
(`parse_anything`) and wrap every child list in a `SmartList`; on real articles that builder costs about five times
the tokenizer. This module builds the same tree shape from the same tokens with plain objects:
  * a sequence of nodes ("code") is a plain `list`;
  * a text node is a plain `str`;
  * the other nodes are the slotted classes below, with the attributes of their mwparserfromhell namesakes
    (`Wikilink.title` / `.text`, `Template.name` / `.params`, `Tag.tag` / `.contents` / `.attributes`, ...).
`source(code)` gives back the exact wikitext (as `str(wikicode)` does), `strip_code(code)` and
`count_wikilinks(code)` mirror `Wikicode.strip_code()` and `len(Wikicode.filter_wikilinks())`.
The tree is read-only: nothing here edits wikitext.
"""

import html.entities
from typing import Optional, Union

from mwparserfromhell import definitions
from mwparserfromhell.parser import Parser
from mwparserfromhell.parser import tokens as T

Node = Union[str, "Wikilink", "Template", "Argument", "ExternalLink", "HTMLEntity", "Heading", "Comment", "Tag"]
Code = list  # of Node

# Tags whose contents strip_code() hides.
_INVISIBLE_TAGS = frozenset(definitions.INVISIBLE_TAGS)


def source(code: Optional[Code]) -> str:
    """The wikitext of a node list (`str(wikicode)`); "" for None."""
    if not code:
        return ""
    return "".join([node if type(node) is str else node.source() for node in code])


class Wikilink:
    """`[[title|text]]`; `text` is None without a pipe."""

    __slots__ = ("title", "text")

    def __init__(self, title: Code, text: Optional[Code]):
        self.title = title
        self.text = text

    def source(self) -> str:
        if self.text is not None:
            return "[[" + source(self.title) + "|" + source(self.text) + "]]"
        return "[[" + source(self.title) + "]]"


class Parameter:
    """One template parameter; `showkey` is False for positional ones (whose `name` is their number)."""

    __slots__ = ("name", "value", "showkey")

    def __init__(self, name: Code, value: Code, showkey: bool):
        self.name = name
        self.value = value
        self.showkey = showkey

    def source(self) -> str:
        if self.showkey:
            return source(self.name) + "=" + source(self.value)
        return source(self.value)


class Template:
    """`{{name|params}}`."""

    __slots__ = ("name", "params")

    def __init__(self, name: Code, params: list[Parameter]):
        self.name = name
        self.params = params

    def source(self) -> str:
        if self.params:
            return "{{" + source(self.name) + "|" + "|".join([param.source() for param in self.params]) + "}}"
        return "{{" + source(self.name) + "}}"

    def has(self, name: str) -> bool:
        """Whether a parameter is called `name` (names compared stripped, as mwparserfromhell does)."""
        return self.get(name) is not None

    def get(self, name: str) -> Optional[Parameter]:
        """The last parameter called `name` (the one MediaWiki reads), or None."""
        name = name.strip()
        for param in reversed(self.params):
            if source(param.name).strip() == name:
                return param
        return None


class Argument:
    """`{{{name|default}}}` (template arguments; they print nothing on an article)."""

    __slots__ = ("name", "default")

    def __init__(self, name: Code, default: Optional[Code]):
        self.name = name
        self.default = default

    def source(self) -> str:
        if self.default is not None:
            return "{{{" + source(self.name) + "|" + source(self.default) + "}}}"
        return "{{{" + source(self.name) + "}}}"


class ExternalLink:
    """`[url title]`, `[url]` or a bare url (brackets False)."""

    __slots__ = ("url", "title", "brackets", "suppress_space")

    def __init__(self, url: Code, title: Optional[Code], brackets: bool, suppress_space: bool):
        self.url = url
        self.title = title
        self.brackets = brackets
        self.suppress_space = suppress_space

    def source(self) -> str:
        if not self.brackets:
            return source(self.url)
        if self.title is None:
            return "[" + source(self.url) + "]"
        return "[" + source(self.url) + ("" if self.suppress_space else " ") + source(self.title) + "]"


class HTMLEntity:
    """`&name;`, `&#123;` or `&#x7b;`."""

    __slots__ = ("value", "named", "hexadecimal", "hex_char")

    def __init__(self, value: str, named: bool, hexadecimal: bool, hex_char: str = "x"):
        self.value = value
        self.named = named
        self.hexadecimal = hexadecimal
        self.hex_char = hex_char

    def source(self) -> str:
        if self.named:
            return "&" + self.value + ";"
        if self.hexadecimal:
            return "&#" + self.hex_char + self.value + ";"
        return "&#" + self.value + ";"

    def normalize(self) -> str:
        """The character the entity stands for."""
        if self.named:
            return chr(html.entities.name2codepoint[self.value])
        if self.hexadecimal:
            return chr(int(self.value, 16))
        return chr(int(self.value))


class Heading:
    """`== title ==` at `level` (the number of equals signs)."""

    __slots__ = ("title", "level")

    def __init__(self, title: Code, level: int):
        self.title = title
        self.level = level

    def source(self) -> str:
        return "=" * self.level + source(self.title) + "=" * self.level


class Comment:
    """`<!-- contents -->`."""

    __slots__ = ("contents",)

    def __init__(self, contents: str):
        self.contents = contents

    def source(self) -> str:
        return "<!--" + self.contents + "-->"


class Attribute:
    """One attribute of a tag: `pad_first name pad_before_eq = pad_after_eq "value"`."""

    __slots__ = ("name", "value", "quotes", "pad_first", "pad_before_eq", "pad_after_eq")

    def __init__(self, name: Code, value: Optional[Code], quotes: Optional[str], pad_first: str, pad_before_eq: str,
                 pad_after_eq: str):
        self.name = name
        self.value = value
        self.quotes = quotes
        self.pad_first = pad_first
        self.pad_before_eq = pad_before_eq
        self.pad_after_eq = pad_after_eq

    def source(self) -> str:
        result = self.pad_first + source(self.name) + self.pad_before_eq
        if self.value is None:
            return result
        result += "=" + self.pad_after_eq
        if self.quotes:
            return result + self.quotes + source(self.value) + self.quotes
        return result + source(self.value)


class Tag:
    """An HTML-style tag (`<ref name=x>...</ref>`, `<br/>`) or wiki markup parsed as one (`''italic''`, `*`, `;`).

    `contents` is an empty list for self-closing tags; `closing_tag` is `tag` unless written differently.
    """

    __slots__ = ("tag", "contents", "attributes", "wiki_markup", "self_closing", "invalid", "implicit", "padding",
                 "closing_tag", "wiki_style_separator", "closing_wiki_markup")

    def __init__(self, tag: Code, contents: Code, attributes: list[Attribute], wiki_markup: Optional[str],
                 self_closing: bool, invalid: bool, implicit: bool, padding: str, closing_tag: Code,
                 wiki_style_separator: Optional[str], closing_wiki_markup: Optional[str]):
        self.tag = tag
        self.contents = contents
        self.attributes = attributes
        self.wiki_markup = wiki_markup
        self.self_closing = self_closing
        self.invalid = invalid
        self.implicit = implicit
        self.padding = padding
        self.closing_tag = closing_tag
        self.wiki_style_separator = wiki_style_separator
        self.closing_wiki_markup = closing_wiki_markup

    def source(self) -> str:
        attributes = "".join([attribute.source() for attribute in self.attributes])
        if self.wiki_markup:
            head = self.wiki_markup + attributes + self.padding + (self.wiki_style_separator or "")
            if self.self_closing:
                return head
            return head + source(self.contents) + (self.closing_wiki_markup or "")
        result = ("</" if self.invalid else "<") + source(self.tag) + attributes
        if self.self_closing:
            return result + self.padding + (">" if self.implicit else "/>")
        return result + self.padding + ">" + source(self.contents) + "</" + source(self.closing_tag) + ">"


# ----------------------------------------------------------------------------------------------------- building


class _End(dict):
    """A token marking the end of the token list."""


# The tokens that end each part of each construct.
_TEMPLATE_NAME_STOPS = (T.TemplateParamSeparator, T.TemplateClose)
_TEMPLATE_PARAM_STOPS = (T.TemplateParamEquals, T.TemplateParamSeparator, T.TemplateClose)
_ARGUMENT_STOPS = (T.ArgumentSeparator, T.ArgumentClose)
_WIKILINK_STOPS = (T.WikilinkSeparator, T.WikilinkClose)
_EXTERNAL_LINK_STOPS = (T.ExternalLinkSeparator, T.ExternalLinkClose)
_HEADING_STOPS = (T.HeadingEnd,)
_COMMENT_STOPS = (T.CommentEnd,)
_ATTRIBUTE_STOPS = (T.TagAttrEquals, T.TagAttrQuote, T.TagAttrStart, T.TagCloseOpen, T.TagCloseSelfclose)
_TAG_STOPS = (T.TagAttrStart, T.TagCloseOpen, T.TagOpenClose, T.TagCloseSelfclose, T.TagCloseClose)
_END_STOPS = (_End,)


class _Builder:
    """Turns mwparserfromhell's token list into the tree above (the logic of its `Builder`, minus the setters).

    Also counts the wikilinks of the page as `count_wikilinks` would (all but those inside tag names and attribute
    names), since every one of them passes through here.
    """

    def __init__(self, tokens: list):
        tokens.append(_End())
        tokens.reverse()
        self._pop = tokens.pop
        self._push_back = tokens.append
        self.wikilinks = 0
        self._handlers = {
            T.TemplateOpen: self._template, T.ArgumentOpen: self._argument, T.WikilinkOpen: self._wikilink,
            T.ExternalLinkOpen: self._external_link, T.HTMLEntityStart: self._entity, T.HeadingStart: self._heading,
            T.CommentStart: self._comment, T.TagOpenOpen: self._tag,
        }

    def _until(self, stops: tuple) -> tuple[Code, object]:
        """Nodes up to the first token whose type is in `stops`; returns them and that token."""
        code: Code = []
        append, pop, text, handlers = code.append, self._pop, T.Text, self._handlers
        while True:
            token = pop()
            kind = type(token)
            if kind is text:
                append(token["text"])
            elif kind in stops:
                return code, token
            else:
                handler = handlers.get(kind)
                if handler is None:
                    what = f"no {stops[-1].__name__} token before the end" if kind is _End else (
                        f"unexpected token {kind.__name__}")
                    raise ValueError(f"wikitext tree: {what}")
                append(handler(token))

    def build(self) -> Code:
        code, _ = self._until(_END_STOPS)
        return code

    def _template(self, _) -> "Template":
        name, token = self._until(_TEMPLATE_NAME_STOPS)
        params: list[Parameter] = []
        default = 1
        while type(token) is T.TemplateParamSeparator:
            value, token = self._until(_TEMPLATE_PARAM_STOPS)
            if type(token) is T.TemplateParamEquals:
                key = value
                value, token = self._until(_TEMPLATE_PARAM_STOPS)
                while type(token) is T.TemplateParamEquals:  # a further "=" restarts the value (as mwparserfromhell)
                    key, (value, token) = value, self._until(_TEMPLATE_PARAM_STOPS)
                params.append(Parameter(key, value, True))
            else:
                params.append(Parameter([str(default)], value, False))
                default += 1
        return Template(name, params)

    def _argument(self, _) -> "Argument":
        name, token = self._until(_ARGUMENT_STOPS)
        if type(token) is T.ArgumentClose:
            return Argument(name, None)
        default, token = self._until(_ARGUMENT_STOPS)
        while type(token) is T.ArgumentSeparator:  # a second "|" restarts the default, as mwparserfromhell does
            name, (default, token) = default, self._until(_ARGUMENT_STOPS)
        return Argument(name, default)

    def _wikilink(self, _) -> "Wikilink":
        self.wikilinks += 1
        title, token = self._until(_WIKILINK_STOPS)
        if type(token) is T.WikilinkClose:
            return Wikilink(title, None)
        text, token = self._until(_WIKILINK_STOPS)
        while type(token) is T.WikilinkSeparator:
            title, (text, token) = text, self._until(_WIKILINK_STOPS)
        return Wikilink(title, text)

    def _external_link(self, opening) -> "ExternalLink":
        brackets = bool(opening.get("brackets"))
        url, token = self._until(_EXTERNAL_LINK_STOPS)
        if type(token) is T.ExternalLinkClose:
            return ExternalLink(url, None, brackets, False)
        suppress_space = token.get("suppress_space") is True
        title, token = self._until(_EXTERNAL_LINK_STOPS)
        while type(token) is T.ExternalLinkSeparator:
            suppress_space = token.get("suppress_space") is True
            url, (title, token) = title, self._until(_EXTERNAL_LINK_STOPS)
        return ExternalLink(url, title, brackets, suppress_space)

    def _entity(self, _) -> "HTMLEntity":
        pop = self._pop
        token = pop()
        if type(token) is T.HTMLEntityNumeric:
            token = pop()
            if type(token) is T.HTMLEntityHex:
                text = pop()
                pop()  # HTMLEntityEnd
                return HTMLEntity(text["text"], False, True, token["char"])
            pop()
            return HTMLEntity(token["text"], False, False)
        pop()
        return HTMLEntity(token["text"], True, False)

    def _heading(self, opening) -> "Heading":
        title, _ = self._until(_HEADING_STOPS)
        return Heading(title, opening["level"])

    def _comment(self, _) -> "Comment":
        contents, _ = self._until(_COMMENT_STOPS)
        return Comment(source(contents))

    def _attribute(self, start) -> "Attribute":
        links_before = self.wikilinks  # links inside an attribute's name do not count
        name: Optional[Code] = None
        quotes = None
        parts: list[Code] = []
        while True:
            part, token = self._until(_ATTRIBUTE_STOPS)
            parts.append(part)
            kind = type(token)
            if kind is T.TagAttrEquals:
                name, parts = self._merge(parts), []
                self.wikilinks = links_before
            elif kind is T.TagAttrQuote:
                quotes = token.get("char")
            else:
                self._push_back(token)
                value: Optional[Code] = self._merge(parts)
                if name is None or not source(name):  # no "=" (or nothing before it): all of it is the name
                    name, value = value, None
                    self.wikilinks = links_before
                return Attribute(name, value, quotes, start.get("pad_first") or "", start.get("pad_before_eq") or "",
                                 start.get("pad_after_eq") or "")

    @staticmethod
    def _merge(parts: list[Code]) -> Code:
        return parts[0] if len(parts) == 1 else [node for part in parts for node in part]

    def _tag(self, opening) -> "Tag":
        wiki_markup = opening.get("wiki_markup")
        invalid = bool(opening.get("invalid"))
        closing_wiki_markup = wiki_markup
        attributes: list[Attribute] = []
        tag: Optional[Code] = None
        contents: Optional[Code] = None
        wiki_style_separator = None
        padding = None
        links_before = self.wikilinks
        while True:
            part, token = self._until(_TAG_STOPS)
            kind = type(token)
            if kind is T.TagAttrStart:
                # Nodes before an attribute are the tag name (it cannot hold links that count).
                tag = part if tag is None else tag + part
                self.wikilinks = links_before
                attributes.append(self._attribute(token))
                links_before = self.wikilinks
            elif kind is T.TagCloseOpen:
                wiki_style_separator = token.get("wiki_markup")
                padding = token.get("padding") or ""
                tag = part if tag is None else tag + part
                self.wikilinks = links_before
            elif kind is T.TagOpenClose:
                closing_wiki_markup = token.get("wiki_markup")
                contents = part
                links_before = self.wikilinks
            elif kind is T.TagCloseSelfclose:
                closing_wiki_markup = token.get("wiki_markup")
                tag = part if tag is None else tag + part
                self.wikilinks = links_before
                padding = token.get("padding") or ""
                return self._make_tag(tag, [], attributes, wiki_markup, True, invalid, bool(token.get("implicit")),
                                      padding, None, wiki_style_separator, closing_wiki_markup)
            else:  # TagCloseClose
                self.wikilinks = links_before
                return self._make_tag(tag, contents, attributes, wiki_markup, False, invalid, False, padding, part,
                                      wiki_style_separator, closing_wiki_markup)

    @staticmethod
    def _make_tag(tag, contents, attributes, wiki_markup, self_closing, invalid, implicit, padding, closing_tag,
                  wiki_style_separator, closing_wiki_markup) -> "Tag":
        if tag is None or padding is None:
            raise ValueError("wikitext tree: a tag without a name or padding")
        wiki_markup = str(wiki_markup) if wiki_markup else None
        closing = wiki_markup if closing_wiki_markup is None else (str(closing_wiki_markup) if closing_wiki_markup
                                                                   else None)
        return Tag(tag, [] if contents is None else contents, attributes, wiki_markup, self_closing, invalid,
                   implicit, padding, tag if closing_tag is None else closing_tag,
                   str(wiki_style_separator) if wiki_style_separator else None, closing)


def parse(wikitext: str) -> tuple[Code, int]:
    """Parses wikitext.

    Args:
      wikitext: page source.

    Returns:
      (the node list, the number of `[[...]]` links anywhere in it as `count_wikilinks` counts them).

    Raises:
      ValueError: the tokenizer produced an inconsistent token stream (a bug, not bad input: any text parses).
    """
    tokens = Parser()._tokenizer.tokenize(wikitext, 0, False)  # pylint: disable=protected-access
    builder = _Builder(tokens)
    return builder.build(), builder.wikilinks


# ------------------------------------------------------------------------------------------------------ reading


def count_wikilinks(code: Optional[Code]) -> int:
    """`[[...]]` links anywhere in `code`, except inside tag names, closing tags and attribute names.

    Args:
      code: nodes.

    Returns:
      The count.
    """
    if not code:
        return 0
    total = 0
    for node in code:
        kind = type(node)
        if kind is str:
            continue
        if kind is Wikilink:
            total += 1 + count_wikilinks(node.title) + count_wikilinks(node.text)
        elif kind is Template:
            total += count_wikilinks(node.name)
            for param in node.params:
                total += count_wikilinks(param.name) + count_wikilinks(param.value)
        elif kind is Tag:
            total += count_wikilinks(node.contents)
            for attribute in node.attributes:
                total += count_wikilinks(attribute.value)
        elif kind is Heading:
            total += count_wikilinks(node.title)
        elif kind is ExternalLink:
            total += count_wikilinks(node.url) + count_wikilinks(node.title)
        elif kind is Argument:
            total += count_wikilinks(node.name) + count_wikilinks(node.default)
    return total


def filter_wikilinks(code: Optional[Code]) -> list[Wikilink]:
    """Every Wikilink in `code`, recursively, in mwparserfromhell's `filter_wikilinks()` order and scope.

    Unlike `count_wikilinks`, this also looks inside tag names, closing tags and attribute names, as
    mwparserfromhell does.
    """
    found: list[Wikilink] = []

    def visit(nodes: Optional[Code]) -> None:
        for node in nodes or ():
            kind = type(node)
            if kind is str or kind is Comment or kind is HTMLEntity:
                continue
            if kind is Wikilink:
                found.append(node)
                visit(node.title)
                visit(node.text)
            elif kind is Template:
                visit(node.name)
                for param in node.params:
                    if param.showkey:
                        visit(param.name)
                    visit(param.value)
            elif kind is Tag:
                if not node.wiki_markup:
                    visit(node.tag)
                for attribute in node.attributes:
                    visit(attribute.name)
                    visit(attribute.value)
                if not node.self_closing:
                    visit(node.contents)
                    if not node.wiki_markup:
                        visit(node.closing_tag)
            elif kind is Heading:
                visit(node.title)
            elif kind is ExternalLink:
                visit(node.url)
                visit(node.title)
            elif kind is Argument:
                visit(node.name)
                visit(node.default)

    visit(code)
    return found


def strip_code(code: Optional[Code]) -> str:
    """The printable text of `code` as `Wikicode.strip_code()` (normalize and collapse on) renders it."""
    parts = []
    for node in code or ():
        stripped = _strip_node(node)
        if stripped:
            parts.append(stripped)
    text = "".join(parts).strip("\n")
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def _strip_node(node: Node) -> Optional[str]:
    kind = type(node)
    if kind is str:
        return node
    if kind is Wikilink:
        return strip_code(node.text if node.text is not None else node.title)
    if kind is Tag:
        if source(node.contents) and source(node.tag).lower() not in _INVISIBLE_TAGS:
            return strip_code(node.contents)
        return None
    if kind is Heading:
        return strip_code(node.title)
    if kind is HTMLEntity:
        return node.normalize()
    if kind is ExternalLink:
        if node.brackets:
            return strip_code(node.title) if source(node.title) else None
        return strip_code(node.url)
    if kind is Argument:
        return strip_code(node.default) if node.default is not None else None
    return None  # templates, comments
