"""The lean wikitext tree against mwparserfromhell's own tree: same shape, same fields, same source text."""

import mwparserfromhell
from mwparserfromhell import nodes as mw
import pytest

from class_jax.corpus import dump_reader, wikitext_tree as wt

EDGE_CASES = [
    "",
    "plain text only",
    "[[Target]] [[Target|shown]] [[a|b|c]] [[|x]] [[Target|]]s trail [[:Category:Foo]] [[File:x.png|thumb|a [[b]]]]",
    "{{a}} {{a|b}} {{a|k=v|k2 = v2 |pos}} {{a|b=c=d}} {{ {{nested|x}} |y=[[z]]}} {{{arg}}} {{{arg|def}}} {{{a|b|c}}}",
    "''italic'' '''bold''' '''''both''''' ''unclosed",
    "<ref name=\"x\">a [[b]]</ref><ref name=y /><br><br/></br><references/><span style='a b'>s</span>",
    "<div class=\"a\" id=b data-x>t</div><nowiki>[[not a link]]</nowiki><pre>x</pre><math>x^2</math>",
    "== Heading [[x]] ==\n=== Sub ''it'' ===\ntext\n==bad",
    "* item\n** sub\n# num\n; term : def\n----\n: indent",
    "&amp; &nbsp; &#123; &#x7B; &#X7b; &bogus; & alone",
    "[http://example.com] [http://example.com title ''x''] http://bare.example.com/path [[http://x]]",
    "<!-- comment [[x]] --> text <!-- unclosed",
    "{| class=wikitable\n|-\n! h1 !! h2\n|-\n| [[a]] || b\n|}",
    "<span [[x]]=\"y\">t</span><b {{t}}>u</b>",
    "[[a]]{{b|[[c]]|d={{e|[[f]]}}}}<ref>[[g]]</ref>",
]


def assert_same(lean, code, where: str) -> None:
    """Recursively compares a lean node list with a mwparserfromhell Wikicode (None with None)."""
    if code is None:
        assert lean is None, where
        return
    assert lean is not None, where
    assert len(lean) == len(code.nodes), f"{where}: {len(lean)} vs {len(code.nodes)} nodes"
    for index, (ours, theirs) in enumerate(zip(lean, code.nodes)):
        here = f"{where}/{index}:{type(theirs).__name__}"
        if isinstance(theirs, mw.Text):
            assert ours == theirs.value, here
        elif isinstance(theirs, mw.Wikilink):
            assert isinstance(ours, wt.Wikilink), here
            assert_same(ours.title, theirs.title, here + ".title")
            assert_same(ours.text, theirs.text, here + ".text")
        elif isinstance(theirs, mw.Template):
            assert isinstance(ours, wt.Template), here
            assert_same(ours.name, theirs.name, here + ".name")
            assert len(ours.params) == len(theirs.params), here
            for ours_param, their_param in zip(ours.params, theirs.params):
                assert ours_param.showkey == their_param.showkey, here
                assert_same(ours_param.name, their_param.name, here + ".param.name")
                assert_same(ours_param.value, their_param.value, here + ".param.value")
        elif isinstance(theirs, mw.Argument):
            assert isinstance(ours, wt.Argument), here
            assert_same(ours.name, theirs.name, here + ".name")
            assert_same(ours.default, theirs.default, here + ".default")
        elif isinstance(theirs, mw.ExternalLink):
            assert isinstance(ours, wt.ExternalLink), here
            assert (ours.brackets, ours.suppress_space) == (theirs.brackets, theirs.suppress_space), here
            assert_same(ours.url, theirs.url, here + ".url")
            assert_same(ours.title, theirs.title, here + ".title")
        elif isinstance(theirs, mw.HTMLEntity):
            assert isinstance(ours, wt.HTMLEntity), here
            assert (ours.value, ours.named, ours.hexadecimal, ours.hex_char) == (
                theirs.value, theirs.named, theirs.hexadecimal, theirs.hex_char), here
        elif isinstance(theirs, mw.Heading):
            assert isinstance(ours, wt.Heading) and ours.level == theirs.level, here
            assert_same(ours.title, theirs.title, here + ".title")
        elif isinstance(theirs, mw.Comment):
            assert isinstance(ours, wt.Comment) and ours.contents == theirs.contents, here
        elif isinstance(theirs, mw.Tag):
            assert isinstance(ours, wt.Tag), here
            assert (ours.wiki_markup, ours.self_closing, ours.invalid, ours.implicit, ours.padding,
                    ours.wiki_style_separator, ours.closing_wiki_markup) == (
                theirs.wiki_markup, theirs.self_closing, theirs.invalid, theirs.implicit, theirs.padding,
                theirs.wiki_style_separator, theirs.closing_wiki_markup), here
            assert_same(ours.tag, theirs.tag, here + ".tag")
            assert_same(ours.contents, theirs.contents, here + ".contents")
            assert_same(ours.closing_tag, theirs.closing_tag, here + ".closing_tag")
            assert len(ours.attributes) == len(theirs.attributes), here
            for ours_attr, their_attr in zip(ours.attributes, theirs.attributes):
                assert (ours_attr.quotes, ours_attr.pad_first, ours_attr.pad_before_eq, ours_attr.pad_after_eq) == (
                    their_attr.quotes, their_attr.pad_first, their_attr.pad_before_eq, their_attr.pad_after_eq), here
                assert_same(ours_attr.name, their_attr.name, here + ".attr.name")
                assert_same(ours_attr.value, their_attr.value, here + ".attr.value")
        else:
            raise AssertionError(f"{here}: unknown node type")


def mw_count_wikilinks(code) -> int:
    """The count the cleaner used to take from mwparserfromhell's tree (all but tag and attribute names)."""
    total = 0
    for node in code.nodes:
        if isinstance(node, mw.Wikilink):
            total += 1 + mw_count_wikilinks(node.title) + (mw_count_wikilinks(node.text) if node.text else 0)
        elif isinstance(node, mw.Template):
            total += mw_count_wikilinks(node.name) + sum(
                mw_count_wikilinks(p.name) + mw_count_wikilinks(p.value) for p in node.params)
        elif isinstance(node, mw.Tag):
            total += mw_count_wikilinks(node.contents) + sum(
                mw_count_wikilinks(a.value) for a in node.attributes if a.value is not None)
        elif isinstance(node, mw.Heading):
            total += mw_count_wikilinks(node.title)
        elif isinstance(node, mw.ExternalLink):
            total += mw_count_wikilinks(node.url) + (mw_count_wikilinks(node.title) if node.title else 0)
        elif isinstance(node, mw.Argument):
            total += mw_count_wikilinks(node.name) + (mw_count_wikilinks(node.default) if node.default else 0)
    return total


def check(wikitext: str, where: str) -> None:
    lean, links = wt.parse(wikitext)
    code = mwparserfromhell.parse(wikitext)
    assert_same(lean, code, where)
    assert wt.source(lean) == str(code) == wikitext, where
    assert links == wt.count_wikilinks(lean) == mw_count_wikilinks(code), where
    assert len(wt.filter_wikilinks(lean)) == len(code.filter_wikilinks()), where
    assert wt.strip_code(lean) == code.strip_code(), where
    for ours, theirs in zip(lean, code.nodes):
        if isinstance(theirs, mw.Heading):
            assert wt.strip_code(ours.title) == theirs.title.strip_code(), where
        if isinstance(theirs, mw.Template):
            for param in theirs.params:
                name = str(param.name).strip()
                assert ours.has(name), where
                assert wt.source(ours.get(name).value) == str(theirs.get(name).value), where
            assert ours.get("no such parameter") is None and not ours.has("no such parameter")


@pytest.mark.parametrize("index", range(len(EDGE_CASES)))
def test_edge_cases_match_mwparserfromhell(index):
    check(EDGE_CASES[index], f"edge case {index}")


def test_real_wikitext_samples_match_mwparserfromhell(shared_dir):
    samples = sorted((shared_dir / "data" / "wiki" / "wikitext").glob("*.txt"))
    assert samples
    for path in samples[::3]:  # a third of the 70 pages keeps the test quick; the slow test reads them all
        check(path.read_text(encoding="utf-8"), path.name)


@pytest.mark.slow
def test_every_real_page_matches_mwparserfromhell(shared_dir):
    for path in sorted((shared_dir / "data" / "wiki" / "wikitext").glob("*.txt")):
        check(path.read_text(encoding="utf-8"), path.name)
    for dump in sorted((shared_dir / "data" / "wiki" / "dumps").glob("*.bz2")):
        for page in dump_reader.DumpReader(str(dump)).pages():
            check(page.text, f"{dump.name}: {page.title}")


def test_entity_normalisation_and_source_of_each_node():
    lean, _ = wt.parse("&eacute;&#233;&#xE9;")
    assert [node.normalize() for node in lean] == ["é", "é", "é"]
    template = wt.parse("{{convert|3|km|mi|abbr=on}}")[0][0]
    assert wt.source(template.get("abbr").value) == "on" and template.get("1").value == ["3"]
    assert template.source() == "{{convert|3|km|mi|abbr=on}}"
