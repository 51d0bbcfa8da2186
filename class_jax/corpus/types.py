"""Records that flow from Wikipedia ingestion to mining: articles with their links, and passages."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Link:
    """A hyperlink inside clean article text.

    Attributes:
      start: character offset of the anchor text in `Article.text` (inclusive).
      end: character offset one past the anchor text.
      anchor: the anchor text as shown (== text[start:end]).
      target: the linked page title, normalised (first letter upper-cased, underscores to spaces, redirects
        resolved when the redirect table is known).
    """

    start: int
    end: int
    anchor: str
    target: str


@dataclasses.dataclass(frozen=True)
class Article:
    """One main-namespace page of one language edition, as clean text.

    Attributes:
      lang: Wikipedia language code ("en", "ja", ...).
      page_id: the page id from the dump.
      title: the page title.
      text: clean text (templates, refs, tables, files and categories removed), paragraphs separated by "\\n".
      links: hyperlinks with spans into `text`, in text order.
      is_disambiguation: the page is a disambiguation page.
      is_list: the page is a list page ("List of ...", or its equivalent).
    """

    lang: str
    page_id: int
    title: str
    text: str
    links: tuple[Link, ...] = ()
    is_disambiguation: bool = False
    is_list: bool = False


@dataclasses.dataclass(frozen=True)
class Passage:
    """A 100-word passage (DPR "w100" convention) of one article.

    Attributes:
      passage_id: stable id, f"{lang}:{page_id}:{index}" (the index counts passages within the article).
      lang: language code.
      title: article title.
      text: the passage text.
      links: links whose anchors lie inside this passage, spans relative to `text`.
    """

    passage_id: str
    lang: str
    title: str
    text: str
    links: tuple[Link, ...] = ()
