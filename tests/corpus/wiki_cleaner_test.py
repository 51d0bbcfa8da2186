"""Tests of wikitext -> clean text with exact link spans (real samples and targeted cases)."""

import random
import re

import pytest

from class_jax.corpus.text_offsets import normalize_with_spans
from class_jax.corpus.titles import LinkKind, NamespaceTable, RedirectTable, normalize_title
from class_jax.corpus.wiki_languages import profile_for
from class_jax.corpus.wikitext_cleaner import WikitextCleaner

# The samples are English except these (identified by their Kategorie:/Datei: links and their prose).
GERMAN_SAMPLES = {"BBDO", "Bazooka", "HMS-Irresistible", "Keilwelle", "Liste-der-argentinischen-Botschafter-in-Chile",
                  "Maurische-Netzwuhle", "Mozilla-Firefox", "Sara-C.-Bisel", "Wendy-Mogel"}
AFRIKAANS_SAMPLES = {"Mark-Behr", "africaans"}
RESIDUE = re.compile(r"\{\{|\}\}|\[\[|\]\]|<ref|</ref|<!--|-->|\{\||\|\}|''|__[A-Z]+__|<(?:br|small|span|div)\b")
LINK_FATES = ("links_kept", "links_category", "links_file", "links_interlanguage", "links_other_namespace",
              "links_interwiki", "links_section_only", "links_empty_anchor", "links_malformed_anchor", "links_nested",
              "links_in_removed_markup")


def cleaner_for(lang: str, redirects: RedirectTable | None = None) -> WikitextCleaner:
    return WikitextCleaner(NamespaceTable(lang), profile_for(lang), redirects)


def sample_language(stem: str) -> str:
    return "de" if stem in GERMAN_SAMPLES else "af" if stem in AFRIKAANS_SAMPLES else "en"


def test_all_wikitext_samples_clean_without_residue_and_with_exact_spans(shared_dir):
    samples = sorted((shared_dir / "data" / "wiki" / "wikitext").glob("*.txt"))
    assert len(samples) == 70
    total_links = 0
    for path in samples:
        wikitext = path.read_text(encoding="utf-8")
        page = cleaner_for(sample_language(path.stem)).clean(wikitext)
        residue = RESIDUE.search(page.text)
        assert residue is None, f"{path.name}: residue {page.text[residue.start() - 40:residue.end() + 40]!r}"
        assert "\n\n" not in page.text and page.text == page.text.strip()
        assert all(line == " ".join(line.split()) for line in page.text.split("\n")), path.name
        previous_end = 0
        for link in page.links:
            assert page.text[link.start:link.end] == link.anchor, path.name
            assert link.anchor == link.anchor.strip() and link.anchor
            assert link.start >= previous_end, f"{path.name}: links overlap or are out of order"
            assert ":" not in link.target or link.target.split(":")[0].lower() not in (
                "category", "file", "image", "kategorie", "datei"), link.target
            previous_end = link.end
        kept_or_dropped = sum(page.counts[key] for key in LINK_FATES)
        assert kept_or_dropped == page.counts["links_seen"] + page.counts["links_template_generated"], path.name
        total_links += len(page.links)
    assert total_links > 5000


def test_sample_links_are_links_of_the_source(shared_dir):
    """Every kept link names a target written as [[target...]] in the page (independent regex extraction)."""
    path = shared_dir / "data" / "wiki" / "wikitext" / "Bodmin.txt"
    wikitext = path.read_text(encoding="utf-8")
    written = {normalize_title(target) for target in re.findall(r"\[\[([^|\]#]+)", wikitext)}
    page = cleaner_for("en").clean(wikitext)
    assert page.links and {link.target for link in page.links} <= written
    assert page.text.startswith("Bodmin (Bosvena) is a civil parish and historic town in Cornwall, England")
    assert "Bodmin Moor" in [link.anchor for link in page.links]
    assert "Category:Bodmin" not in page.text and "Bodmin" in page.categories


def test_redirect_sample_and_real_cases(shared_dir):
    redirect = (shared_dir / "data" / "wiki" / "wikitext" / "redirect.txt").read_text(encoding="utf-8")
    page = cleaner_for("en").clean(redirect)
    assert [link.target for link in page.links] == ["Toronto"]


@pytest.mark.parametrize("wikitext,text,anchors", [
    ("'''Bold''' and ''[[Italic link]]''.", "Bold and Italic link.", [("Italic link", "Italic link")]),
    ("A [[bus]]es stop.", "A buses stop.", [("buses", "Bus")]),
    ("See [[Pipe (computing)|]] here.", "See Pipe here.", [("Pipe", "Pipe (computing)")]),
    ("In [[Boston, Massachusetts|]].", "In Boston.", [("Boston", "Boston, Massachusetts")]),
    ("[[foo_bar#History|the history]] of it", "the history of it", [("the history", "Foo bar")]),
    ("X<ref>{{cite web|url=http://a|title=[[Hidden]]}}</ref> y.", "X y.", []),
    ("Born ({{lang-fr|Jean}}) in [[Paris]].", "Born (Jean) in Paris.", [("Paris", "Paris")]),
    ("Town {{Infobox|x=[[Hidden]]}}in [[Spain]] {{citation needed}}.", "Town in Spain.", [("Spain", "Spain")]),
    ("[[File:X.jpg|thumb|A [[caption link]].]]Text [[Here]].", "Text Here.", [("Here", "Here")]),
    ("Text.\n[[Category:Things]]\n[[de:Ding]]", "Text.", []),
    ("Show [[:Category:Things|things]] and [[wikt:word|word]].", "Show things and word.", []),
    ("a &amp; b&nbsp;c [http://example.org site] [http://bare.org]", "a & b c site", []),
    ("== History ==\nOld [[town]].\n\n== References ==\n{{reflist}}\n* [[Not kept]]",
     "History\nOld town.", [("town", "Town")]),
    ("* item [[One]]\n* item [[Two|2]]", "item One\nitem 2", [("One", "One"), ("2", "Two")]),
    ("{| class=wikitable\n| [[In table]]\n|}\nAfter.", "After.", []),
    ("x <math>a^2</math> y <!-- [[hidden]] --> z __NOTOC__", "x y z", []),
    ("{{convert|10|km|mi}} long, {{nowrap|[[New York]] City}}", "10 km long, New York City",
     [("New York", "New York")]),
    ("{{ill|Kurt Schwitters|de|Kurt Schwitters}} painted", "Kurt Schwitters painted",
     [("Kurt Schwitters", "Kurt Schwitters")]),
    ("[[Link with ''italic'' part]] then", "Link with italic part then", [("Link with italic part", None)]),
    ("[[A|outer [[B]] inner]] end", "outer B inner end", [("outer B inner", "A")]),
    ("Empty [[Link| ]] anchor and [[#Section|same page]].", "Empty Link anchor and same page.",
     [("Link", "Link")]),
])
def test_targeted_cleaning_cases(wikitext, text, anchors):
    page = cleaner_for("en").clean(wikitext)
    assert page.text == text
    got = [(link.anchor, link.target) for link in page.links]
    assert [anchor for anchor, _ in got] == [anchor for anchor, _ in anchors]
    for (_, target), (_, expected) in zip(got, anchors):
        if expected is not None:
            assert target == expected
    for link in page.links:
        assert page.text[link.start:link.end] == link.anchor


def test_interlanguage_and_category_links_are_recorded_not_printed():
    page = cleaner_for("en").clean("Body [[x]].\n== See also ==\n* [[Y]]\n[[Category:Cats]]\n[[de:Katzen]]\n"
                                   "[[ja:猫]]\n[[zh-min-nan:Niau]]")
    assert page.text == "Body x."
    assert page.categories == ("Cats",)
    assert page.interlanguage == (("de", "Katzen"), ("ja", "猫"), ("zh-min-nan", "Niau"))
    assert page.counts["links_interlanguage"] == 3 and page.counts["links_category"] == 1


def test_links_resolve_through_redirect_chains_with_loop_guard():
    redirects = RedirectTable({"UK": "United Kingdom of GB", "United Kingdom of GB": "United Kingdom",
                               "Loop A": "Loop B", "Loop B": "Loop A"})
    page = cleaner_for("en", redirects).clean("The [[UK]], [[Loop A|a loop]] and [[France]].")
    assert [link.target for link in page.links] == ["United Kingdom", "Loop A", "France"]
    assert page.counts["links_via_redirect"] == 1
    assert redirects.resolve("Loop B") is None and redirects.resolve("France") == "France"


def test_localised_namespaces_and_no_link_trail_in_japanese():
    page = cleaner_for("ja").clean("[[東京]]は[[日本]]の首都である。[[ファイル:Tokyo.jpg|thumb|[[東京]]]][[カテゴリ:都市]]")
    assert page.text == "東京は日本の首都である。"
    assert [(link.anchor, link.target) for link in page.links] == [("東京", "東京"), ("日本", "日本")]
    assert page.categories == ("都市",)


@pytest.mark.parametrize("wikitext,text,links_seen", [
    # Bold, footnote, bold: the footnote's place is kept, or the quotes would run together.
    ("'''A'''<ref>x</ref>'''B''' [[C]]", "AB C", 1),
    # A footnote's links count as seen (and removed), as the tree counts them: not inside comments or nowiki.
    ("X<ref name=\"n\">[[A]] {{cite|t=[[B]]}} <!-- [[not counted]] --></ref> y <ref name=n/>.", "X y.", 2),
    # Unbalanced italics inside a footnote stay inside it; mwparserfromhell alone let them swallow the next
    # paragraph (the real case: Angola on English Wikipedia, 16 kB of prose lost).
    ("Text.<ref>''Title’’, vol. 2, ''Other''</ref>\n#Next paragraph with [[Link]].", "Text.\nNext paragraph with Link.",
     1),
    # MediaWiki's rule: the first closing tag, in any case, ends a footnote; one without a closing tag is text
    # (whose stray tag the cleaner removes).
    ("a<REF>b</Ref>c <ref>d</ref>e</ref> f", "ac e f", 0),
    ("a <ref>never [[closed]]", "a never closed", 1),
    # Footnote markup inside a comment, nowiki or pre is not a footnote.
    ("a <nowiki><ref>[[x]]</ref></nowiki> b<!-- <ref>[[y]]</ref> -->", "a <ref>[[x]]</ref> b", 0),
    ("Intro.\n<references>\n<ref name=a>[[Hidden]]</ref>\n</references>\nEnd.", "Intro.\nEnd.", 1),
])
def test_footnotes_are_dropped_before_parsing(wikitext, text, links_seen):
    page = cleaner_for("en").clean(wikitext)
    assert page.text == text
    assert page.counts["links_seen"] == links_seen
    assert sum(page.counts[key] for key in LINK_FATES) == links_seen


def test_double_escaped_source_is_unescaped_once():
    page = cleaner_for("en").clean("Text&lt;ref&gt;a [[hidden]] ref&lt;/ref&gt; with [[Link]].")
    assert page.text == "Text with Link."


@pytest.mark.parametrize("raw,expected", [
    ("foo_bar", "Foo bar"), ("  multiple   spaces ", "Multiple spaces"), ("Page#Section", "Page"),
    ("caf%C3%A9", "Café"), ("AT&amp;T", "AT&T"), ("ßtraße", "ßtraße"), ("#only", ""),
])
def test_normalize_title(raw, expected):
    assert normalize_title(raw) == expected


@pytest.mark.parametrize("target,kind", [
    ("Category:X", LinkKind.CATEGORY), ("category : X", LinkKind.CATEGORY), ("Image:X.png", LinkKind.FILE),
    ("fr:Chat", LinkKind.INTERLANGUAGE), ("wikt:cat", LinkKind.INTERWIKI), ("Talk:X", LinkKind.OTHER_NAMESPACE),
    ("Star Wars: Episode IV", LinkKind.ARTICLE), ("doi:10.1/x", LinkKind.INTERWIKI),
])
def test_link_classification(target, kind):
    assert NamespaceTable("en").classify(target).kind is kind


def test_site_namespaces_from_the_dump_are_recognised():
    table = NamespaceTable("xx", {"Mynd": 6, "Flokkur": 14})
    assert table.classify("Flokkur:Y").kind is LinkKind.CATEGORY
    assert table.classify("Mynd:Y.png").kind is LinkKind.FILE


def test_normalize_with_spans_moves_spans_exactly():
    text = "  A  ( ) big   [[x]] ,\n\n\n\t Link  text  here .  "
    spans = [(text.index("big"), text.index("big") + 3), (text.index("Link"), text.index("here") + 4)]
    clean, moved = normalize_with_spans(text, spans)
    assert clean == "A big [[x]],\nLink text here."
    assert [clean[start:end] for start, end in moved] == ["big", "Link text here"]


def reference_normalize(text: str, spans: list[tuple[int, int]]) -> tuple[str, list]:
    """Whitespace collapsing written plainly (one regex, per-character map), after the same residue removal."""
    from class_jax.corpus import text_offsets
    trimmed = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        trimmed.append((start, end) if start < end else None)
    text, residue_map = text_offsets._remove_residue(text, [span for span in trimmed if span is not None])
    trimmed = text_offsets._map_spans(residue_map, trimmed)
    new_position: list[int | None] = [None] * len(text)
    output: list[str] = []
    cursor = 0
    for match in re.finditer(r"\s*\n\s*|[^\S\n]{2,}|[^\S\n ]|^ | $", text):
        for position in range(cursor, match.start()):
            new_position[position] = len(output)
            output.append(text[position])
        cursor = match.end()
        if match.start() > 0 and match.end() < len(text):
            output.append("\n" if "\n" in match.group() else " ")
    for position in range(cursor, len(text)):
        new_position[position] = len(output)
        output.append(text[position])
    moved = []
    for span in trimmed:
        first = None if span is None else new_position[span[0]]
        last = None if span is None else new_position[span[1] - 1]
        moved.append(None if first is None or last is None else (first, last + 1))
    return "".join(output), moved


def test_normalize_with_spans_matches_a_plain_reference_on_random_text():
    rng = random.Random(0)
    alphabet = ["a", "b", " ", " ", "\n", "\t", "\xa0", "\u2009", "(", ")", ".", ",", "&nbsp;", "\u200e", "\r", "\x1c"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        spans, position = [], 0
        while position < len(text) and rng.random() < 0.7:
            start = rng.randint(position, len(text) - 1)
            end = rng.randint(start + 1, len(text))
            spans.append((start, end))
            position = end
        assert normalize_with_spans(text, spans) == reference_normalize(text, spans), (text, spans)
