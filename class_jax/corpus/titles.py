"""Page titles: normalisation, namespace and prefix classification, and redirect resolution.

MediaWiki treats `foo_bar`, `Foo bar` and ` Foo  bar ` as the same page (on first-letter-case wikis); links,
redirects and langlinks must all be normalised the same way before they can be joined.
"""

import dataclasses
import enum
import html
import re
import urllib.parse
from typing import Iterable, Mapping

from class_jax.corpus import wiki_languages

_WHITESPACE = re.compile(r"[\s_\u00a0\u200e\u200f]+")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def normalize_title(title: str, first_letter_case: bool = True) -> str:
    """Normalises a page title the way MediaWiki does before looking it up.

    Decodes HTML entities and %-escapes, turns underscores and runs of whitespace into single spaces, strips the
    ends and drops a `#fragment`; on first-letter wikis (all Wikipedias) upper-cases the first character.

    Args:
      title: a title as written in a link, redirect or dump.
      first_letter_case: upper-case the first letter (`<case>first-letter</case>` in the dump).

    Returns:
      The normalised title; "" when nothing is left (e.g. a same-page `#section` link).
    """
    title = html.unescape(title)
    if _PERCENT_ESCAPE.search(title):
        title = urllib.parse.unquote(title)
    title = title.split("#", 1)[0]
    title = _WHITESPACE.sub(" ", title).strip()
    if first_letter_case and title:
        first = title[0].upper()
        # Python upper-cases "ß" to "SS"; MediaWiki leaves letters without a single-letter capital alone.
        if len(first) == 1:
            title = first + title[1:]
    return title


class LinkKind(enum.Enum):
    """What a `[[prefix:rest]]` link points at."""

    ARTICLE = "article"
    FILE = "file"
    CATEGORY = "category"
    OTHER_NAMESPACE = "other_namespace"
    INTERLANGUAGE = "interlanguage"
    INTERWIKI = "interwiki"


@dataclasses.dataclass(frozen=True)
class LinkTarget:
    """A classified link target.

    Attributes:
      kind: what the link points at.
      title: normalised title (without namespace prefix for ARTICLE, the full normalised target otherwise;
        for INTERLANGUAGE the title in the other language).
      prefix: the language code (INTERLANGUAGE) or interwiki prefix (INTERWIKI); "" otherwise.
      leading_colon: written `[[:...]]`, which shows a file, category or language link inline.
    """

    kind: LinkKind
    title: str
    prefix: str = ""
    leading_colon: bool = False


class NamespaceTable:
    """Resolves title prefixes to namespaces for one wiki.

    Args:
      lang: the wiki's language code (for its localised default namespace names).
      site_namespaces: localised names from the dump's `<siteinfo>` (name -> number); may be empty.
      first_letter_case: the wiki upper-cases first letters of titles.
    """

    def __init__(self, lang: str, site_namespaces: Mapping[str, int] | None = None,
                 first_letter_case: bool = True):
        self.lang = lang
        self.first_letter_case = first_letter_case
        self._namespaces: dict[str, int] = dict(wiki_languages.CANONICAL_NAMESPACES)
        self._namespaces.update(wiki_languages.profile_for(lang).namespace_aliases)
        for name, number in (site_namespaces or {}).items():
            if name:
                self._namespaces[_prefix_key(name)] = number

    def namespace_of(self, prefix: str) -> int | None:
        """The namespace number of a prefix (case-insensitive), or None when it is no namespace."""
        return self._namespaces.get(_prefix_key(prefix))

    def split_namespace(self, title: str) -> tuple[int, str]:
        """Splits `Ns:Rest` into (namespace number, rest); titles without a namespace prefix give (0, title)."""
        if ":" in title:
            prefix, rest = title.split(":", 1)
            number = self.namespace_of(prefix)
            if number is not None:
                return number, rest
        return wiki_languages.MAIN_NAMESPACE, title

    def classify(self, raw_target: str) -> LinkTarget:
        """Classifies the target of a `[[...]]` link as written.

        Args:
          raw_target: the part before the first `|`.

        Returns:
          The classified, normalised target.
        """
        target = html.unescape(raw_target).strip()
        leading_colon = target.startswith(":")
        if leading_colon:
            target = target[1:].strip()
        if ":" in target:
            prefix, rest = target.split(":", 1)
            key = _prefix_key(prefix)
            number = self._namespaces.get(key)
            if number is not None and number != wiki_languages.MAIN_NAMESPACE:
                if number in wiki_languages.FILE_NAMESPACES:
                    kind = LinkKind.FILE
                elif number == wiki_languages.CATEGORY_NAMESPACE:
                    kind = LinkKind.CATEGORY
                else:
                    kind = LinkKind.OTHER_NAMESPACE
                return LinkTarget(kind, normalize_title(rest, self.first_letter_case), "", leading_colon)
            code = key.replace(" ", "-")
            if code in wiki_languages.WIKIPEDIA_LANGUAGE_CODES:
                # The other wiki decides its own case rules; keep the title as written, minus whitespace noise.
                return LinkTarget(LinkKind.INTERLANGUAGE, normalize_title(rest, first_letter_case=False), code,
                                  leading_colon)
            if key in wiki_languages.INTERWIKI_PREFIXES:
                return LinkTarget(LinkKind.INTERWIKI, rest.strip(), key, leading_colon)
        return LinkTarget(LinkKind.ARTICLE, normalize_title(target, self.first_letter_case), "", leading_colon)


def _prefix_key(prefix: str) -> str:
    return _WHITESPACE.sub(" ", prefix).strip().lower()


@dataclasses.dataclass
class RedirectTable:
    """Redirects of one wiki, resolved through chains with a loop guard.

    Attributes:
      targets: redirect title -> target title, both normalised, as read from the dump.
      max_hops: chains longer than this are treated like loops (MediaWiki itself follows one hop; dumps
        contain double redirects that bots have not fixed yet, so we follow a few).
    """

    targets: dict[str, str] = dataclasses.field(default_factory=dict)
    max_hops: int = 8

    def add(self, title: str, target: str) -> None:
        """Records one redirect."""
        self.targets[title] = target

    def __len__(self) -> int:
        return len(self.targets)

    def __contains__(self, title: str) -> bool:
        return title in self.targets

    def resolve(self, title: str) -> str | None:
        """Follows redirects from a title to the final page.

        Args:
          title: a normalised title.

        Returns:
          The final title (the title itself when it is no redirect), or None when the chain loops or is longer
          than `max_hops`.
        """
        seen = {title}
        for _ in range(self.max_hops):
            target = self.targets.get(title)
            if target is None:
                return title
            if target in seen:
                return None
            seen.add(target)
            title = target
        return None if title in self.targets else title

    def resolve_all(self) -> Iterable[tuple[str, str, str | None]]:
        """Yields (redirect, direct target, final target or None for loops) for every redirect."""
        for title, target in self.targets.items():
            yield title, target, self.resolve(title)
