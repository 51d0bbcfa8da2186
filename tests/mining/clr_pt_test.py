"""Tests for the CLR-PT parallel rule on hand-built English/target article pairs (ja, ru, ar, de).

The articles are written like real Wikipedia prose. Each pair comes with its gold labels (which English and target
sentences say the same thing), so the tests also measure the rule's precision and recall on them.
"""

import re

import pytest

from class_jax.mining.clr_pt import parallel as clr_pt
from class_jax.mining.clr_pt import audit
from class_jax.mining.clr_pt import rule as clr_pt_rule
from class_jax.corpus import passages as passages_lib
from class_jax.mining.clr_pt.rule import ParallelRuleConfig
from class_jax.corpus.types import Article, Link
from class_jax.runtime.errors import UserError

MASK = "_X_"

# Cross-language entity table of the test articles: entity id -> {lang: title}.
ENTITY_TITLES = {
    "Q1490": {"en": "Tokyo", "ja": "東京都"},
    "Q17": {"en": "Japan", "ja": "日本", "ru": "Япония", "ar": "اليابان", "de": "Japan"},
    "Q130852": {"en": "Emperor Meiji", "ja": "明治天皇"},
    "Q184799": {"en": "Tokyo Skytree", "ja": "東京スカイツリー"},
    "Q34600": {"en": "Kyoto", "ja": "京都市"},
    "Q2": {"en": "Microsoft", "ja": "マイクロソフト"},
    "Q937": {"en": "Albert Einstein", "de": "Albert Einstein"},
    "Q3012": {"en": "Ulm", "de": "Ulm"},
    "Q1726": {"en": "Munich", "de": "München"},
    "Q490": {"en": "Milan", "de": "Mailand"},
    "Q6259": {"en": "Pavia", "de": "Pavia"},
    "Q1344": {"en": "Kraftwerk", "de": "Kraftwerk"},
    "Q649": {"en": "Moscow", "ru": "Москва"},
    "Q159": {"en": "Russia", "ru": "Россия"},
    "Q175117": {"en": "Moskva (river)", "ru": "Москва (река)"},
    "Q79": {"en": "Egypt", "ar": "مصر"},
    "Q85": {"en": "Cairo", "ar": "القاهرة"},
    "Q1016": {"en": "Libya", "ar": "ليبيا"},
    "Q15": {"en": "Africa", "ar": "أفريقيا"},
    "Q30487": {"en": "Mikhail Gorbachev", "ja": "ミハイル・ゴルバチョフ"},
    "Q254906": {"en": "Raisa Gorbacheva", "ja": "ライサ・ゴルバチョワ"},
    "Q8684": {"en": "Seoul", "ko": "서울특별시"},
    "Q884": {"en": "South Korea", "ko": "대한민국"},
    "Q189280": {"en": "Han River", "ko": "한강"},
}
TITLES = {(lang, title): entity for entity, titles in ENTITY_TITLES.items() for lang, title in titles.items()}


def make_article(lang: str, page_id: int, title: str, marked: str, **flags) -> Article:
    """An Article from text with [[Target|anchor]] / [[Target]] marks; link spans are computed."""
    text, links = "", []
    cursor = 0
    for match in re.finditer(r"\[\[([^|\]]+)(?:\|([^\]]+))?\]\]", marked):
        text += marked[cursor:match.start()]
        target, anchor = match.group(1), match.group(2) or match.group(1)
        links.append(Link(len(text), len(text) + len(anchor), anchor, target))
        text += anchor
        cursor = match.end()
    text += marked[cursor:]
    return Article(lang=lang, page_id=page_id, title=title, text=text, links=tuple(links), **flags)


def mine(english: Article, target: Article, config: ParallelRuleConfig | None = None,
         with_passages: bool = False) -> clr_pt.PairMiningResult:
    def linked(article: Article) -> clr_pt.LinkedArticle:
        passages = passages_lib.split_passages(article, units_per_passage=8) if with_passages else None
        return clr_pt.link_with_titles(article, TITLES, passages)

    return clr_pt.ClrPtMiner(config).mine(linked(english), linked(target), ENTITY_TITLES)


TOKYO_EN = make_article("en", 1, "Tokyo", (
    "Tokyo is the capital of [[Japan]] and the most populous city in the country. "
    "In 1868, the city was renamed from Edo when [[Emperor Meiji]] moved his residence there. "
    "The [[Tokyo Skytree]] opened in 2012 and is the tallest tower in Japan.\n"
    "Climate\n"
    "Summers are hot and humid, and winters are mild."))
TOKYO_JA = make_article("ja", 101, "東京都", (
    "東京都は[[日本]]の首都であり、国内で最も人口の多い都市である。"
    "1868年、[[明治天皇]]が居所を移した際に江戸から改称された。"
    "2012年に開業した[[東京スカイツリー]]は日本で最も高い塔である。\n"
    "気候\n"
    "夏は高温多湿で、冬は温暖である。"))

EINSTEIN_EN = make_article("en", 2, "Albert Einstein", (
    "Einstein was born in [[Ulm]] in 1879 into a family of secular Jews. "
    "In 1880, the family moved to [[Munich]], where his father founded an electrical company."))
EINSTEIN_DE = make_article("de", 202, "Albert Einstein", (
    "Albert Einstein wurde am 14. März 1879 in [[Ulm]] geboren. "
    "Im Jahr 1894 zog die Familie nach [[Mailand]], während Albert zunächst in [[München]] blieb."))

MOSCOW_EN = make_article("en", 3, "Moscow", (
    "Moscow is the capital of [[Russia]]. "
    "The [[Moskva (river)|Moskva River]] flows through the city for 80 km."))
MOSCOW_RU = make_article("ru", 303, "Москва", (
    "Москва — столица [[Россия|России]], город федерального значения, административный центр Центрального "
    "федерального округа и центр Московской области, в состав которой не входит. "
    "Через город протекает [[Москва (река)|Москва-река]] на протяжении 80 км."))

EGYPT_EN = make_article("en", 4, "Egypt", (
    "[[Cairo]] is the capital of Egypt, with about 10 million inhabitants. "
    "Egypt borders [[Libya]] to the west and lies in the north-east of [[Africa]]."))
EGYPT_AR = make_article("ar", 404, "مصر", (
    "تأسست [[القاهرة]] عام 969 على يد الفاطميين وأصبحت مركزا للحكم. "
    "تحد مصر [[ليبيا]] من الغرب وتقع في شمال شرق [[أفريقيا]]."))

# Gold labels: (English sentence start, target sentence start) of every truly parallel pair, by article pair.
GOLD = {
    "ja": ("Tokyo is the capital", "東京都は"), "ja2": ("In 1868", "1868年"), "ja3": ("The Tokyo Skytree", "2012年"),
    "de": ("Einstein was born", "Albert Einstein wurde"),
    "ru": ("The Moskva River", "Через город"),
    "ar": ("Egypt borders", "تحد مصر"),
}
PAIRS = [(TOKYO_EN, TOKYO_JA), (EINSTEIN_EN, EINSTEIN_DE), (MOSCOW_EN, MOSCOW_RU), (EGYPT_EN, EGYPT_AR)]


def test_true_parallel_pairs_are_kept_with_masks_on_the_anchors():
    result = mine(TOKYO_EN, TOKYO_JA)
    clozes = {(record.english_cloze, record.target_cloze, record.answer, record.target_answer)
              for record in result.records}
    assert clozes == {
        ("Tokyo is the capital of _X_ and the most populous city in the country.",
         "東京都は_X_の首都であり、国内で最も人口の多い都市である。", "Japan", "日本"),
        ("In 1868, the city was renamed from Edo when _X_ moved his residence there.",
         "1868年、_X_が居所を移した際に江戸から改称された。", "Emperor Meiji", "明治天皇"),
        ("The _X_ opened in 2012 and is the tallest tower in Japan.",
         "2012年に開業した_X_は日本で最も高い塔である。", "Tokyo Skytree", "東京スカイツリー"),
    }
    for record in result.records:
        assert record.lang == "ja" and record.article_entity == "Q1490"
        assert record.english_title == "Tokyo" and record.target_title == "東京都"
        assert record.qid.startswith("clr-ja-") and len(record.qid) == len("clr-ja-") + 16
    assert {record.answer_entity for record in result.records} == {"Q17", "Q130852", "Q184799"}
    assert result.counts["kept_pairs"] == 3 and result.counts["clozes"] == 3


def test_unlinked_second_mentions_count_but_never_become_an_unlinked_pair():
    # "Japan" is linked only in the first sentence (Wikipedia's first-mention rule); its later mentions still
    # count as shared entities, so the Skytree sentences share two entities and outrank the lead/Skytree mix.
    result = mine(TOKYO_EN, TOKYO_JA)
    assert result.counts["candidate_pairs"] == 5  # 3 true + lead vs Skytree sentence, both ways, via "Japan".
    assert result.counts["rejected/years_differ"] == 2
    assert result.counts["masked_title_mention"] == 0


def test_sentences_sharing_one_entity_but_different_facts_are_rejected_by_years():
    result = mine(EINSTEIN_EN, EINSTEIN_DE)
    assert [(r.english_cloze, r.target_cloze) for r in result.records] == [
        ("Einstein was born in _X_ in 1879 into a family of secular Jews.",
         "Albert Einstein wurde am 14. März 1879 in _X_ geboren.")]
    # Moving to Munich in 1880 is not staying in Munich after 1894, though both sentences link Munich.
    assert result.counts["rejected/years_differ"] == 1


def test_length_ratio_rejects_a_long_russian_sentence_for_a_short_english_one():
    result = mine(MOSCOW_EN, MOSCOW_RU)
    assert result.counts["rejected/length_ratio"] == 1
    [record] = result.records
    assert record.english_cloze == "The _X_ flows through the city for 80 km."
    assert record.target_cloze == "Через город протекает _X_ на протяжении 80 км."
    assert (record.answer, record.target_answer, record.answer_entity) == ("Moskva River", "Москва-река", "Q175117")


def test_numbers_that_disagree_reject_the_pair():
    result = mine(EGYPT_EN, EGYPT_AR)
    assert result.counts["rejected/numbers_differ"] == 1  # 10 million inhabitants vs founded in 969.
    [record] = result.records
    # Two entities are shared; the first in English order is masked, the other stays as context.
    assert record.english_cloze == "Egypt borders _X_ to the west and lies in the north-east of Africa."
    assert record.target_cloze == "تحد مصر _X_ من الغرب وتقع في شمال شرق أفريقيا."
    assert record.answer_entity == "Q1016"


def test_rule_precision_and_recall_on_the_hand_labelled_pairs():
    kept = set()
    for english, target in PAIRS:
        for record in mine(english, target).records:
            english_sentence = record.english_cloze.replace(MASK, record.answer)
            target_sentence = record.target_cloze.replace(MASK, record.target_answer)
            kept.add((english_sentence, target_sentence))
    gold_hits = {key for key, (en_start, target_start) in GOLD.items()
                 if any(e.startswith(en_start) and t.startswith(target_start) for e, t in kept)}
    correct = sum(1 for e, t in kept if any(e.startswith(a) and t.startswith(b) for a, b in GOLD.values()))
    assert correct / len(kept) == 1.0  # Precision.
    assert len(gold_hits) / len(GOLD) == 1.0  # Recall.


def test_one_to_one_keeps_the_better_scoring_english_sentence():
    english = make_article("en", 5, "Kyoto", (
        "Kyoto served as the capital of [[Japan]] from 794 for more than a thousand years. "
        "Many visitors from Japan and abroad come to see its old temples."))
    target = make_article("ja", 505, "京都市", "京都市は794年から千年以上にわたり[[日本]]の首都であった。")
    result = mine(english, target)
    assert result.counts["candidate_pairs"] == 2
    assert result.counts["rejected/not_best_match"] == 1
    [record] = result.records
    assert record.english_cloze.startswith("Kyoto served as the capital of _X_ from 794")


def test_answer_named_elsewhere_in_the_sentence_is_not_masked():
    english = make_article("en", 6, "Kyoto University", "Kyoto University is a national university in [[Kyoto]].")
    target = make_article("ja", 606, "京都大学", "京都大学は、[[京都市]]にある国立大学である。")
    titles = dict(ENTITY_TITLES, Q34433={"en": "Kyoto University", "ja": "京都大学"})
    table = {(lang, title): entity for entity, names in titles.items() for lang, title in names.items()}
    miner = clr_pt.ClrPtMiner()
    result = miner.mine(clr_pt.link_with_titles(english, table), clr_pt.link_with_titles(target, table), titles)
    assert result.records == []
    assert result.counts["rejected/no_maskable_entity"] == 1
    assert result.counts["unmaskable/answer_in_cloze"] == 1


def test_untranslated_copy_and_foreign_script_are_rejected():
    english = make_article("en", 7, "Computer World", "[[Kraftwerk]] released the album Computer World in 1981.")
    copy = make_article("de", 707, "Computer World", "[[Kraftwerk]] released the album Computer World in 1981.")
    assert mine(english, copy).counts["rejected/untranslated"] == 1
    english = make_article("en", 8, "Windows 95", "[[Microsoft]] released Windows 95 in August 1995.")
    latin = make_article("ja", 808, "Windows 95", "Windows 95は[[マイクロソフト]]がMicrosoft Windows OSとして1995年に発売した。")
    assert mine(english, latin).counts["rejected/target_wrong_script"] == 1


def test_transliterated_names_count_as_one_unit_in_the_length_ratio():
    english = make_article("en", 11, "Mikhail Gorbachev", "Gorbachev married [[Raisa Gorbacheva|Raisa Titarenko]] in 1953.")
    target = make_article("ja", 1111, "ミハイル・ゴルバチョフ",
                          "ミハイル・ゴルバチョフは1953年に[[ライサ・ゴルバチョワ|ライサ・チタレンコ]]と結婚した。")
    # Counted in plain characters the Japanese sentence looks 2.4 times too long; its names are most of it.
    [record] = mine(english, target).records
    assert record.target_cloze == "ミハイル・ゴルバチョフは1953年に_X_と結婚した。"


def test_korean_names_are_found_before_their_particles():
    english = make_article("en", 12, "Seoul", (
        "Seoul is the capital of [[South Korea]] and its largest city. The [[Han River]] flows through the city."))
    target = make_article("ko", 1212, "서울특별시", (
        "서울특별시는 [[대한민국]]의 수도이자 최대 도시로 [[한강]] 유역에 있다. 한강이 도시를 가로질러 흐른다."))
    result = mine(english, target)
    clozes = {(r.english_cloze, r.target_cloze, r.target_answer) for r in result.records}
    assert ("The _X_ flows through the city.", "_X_이 도시를 가로질러 흐른다.", "한강") in clozes
    assert result.counts["masked_title_mention"] == 1  # The second Korean mention of the river is not linked.


def test_entities_the_other_article_places_elsewhere_reject_the_pair():
    english = make_article("en", 10, "Albert Einstein", (
        "In 1894, the family moved from [[Munich]] to [[Milan]] and then to [[Pavia]]."))
    target = make_article("de", 1010, "Albert Einstein", (
        "Im Jahr 1894 zog die Familie nach [[Mailand]]. "
        "Einstein besuchte in [[München]] das Luitpold-Gymnasium. "
        "Später lebte die Familie auch in [[Pavia]] am Tessin."))
    result = mine(english, target)
    # Milan is shared, but Munich and Pavia sit in other German sentences: the English one says more.
    assert result.counts["rejected/one_sided_entities"] == 1
    assert not result.records  # The other two candidates differ in years or length.
    assert len(mine(english, target, ParallelRuleConfig(max_one_sided_entities=2)).records) == 1


def test_every_candidate_has_exactly_one_outcome():
    for english, target in PAIRS:
        counts = mine(english, target).counts
        reasons = {key.split("/", 1)[1]: n for key, n in counts.items() if key.startswith("rejected/")}
        assert set(reasons) <= set(clr_pt_rule.REJECTION_REASONS)
        assert counts["candidate_pairs"] == counts["kept_pairs"] + sum(reasons.values())


def test_disambiguation_pages_are_not_mined():
    page = make_article("en", 9, "Tokyo (disambiguation)", "Tokyo is the capital of [[Japan]].", is_disambiguation=True)
    result = mine(page, TOKYO_JA)
    assert result.records == [] and result.counts["skipped_article_pairs"] == 1


def test_records_name_the_passages_holding_the_answers():
    result = mine(TOKYO_EN, TOKYO_JA, with_passages=True)
    english_passages = {p.passage_id: p for p in passages_lib.split_passages(TOKYO_EN, units_per_passage=8)}
    target_passages = {p.passage_id: p for p in passages_lib.split_passages(TOKYO_JA, units_per_passage=8)}
    assert len(english_passages) > 3
    for record in result.records:
        assert record.answer in english_passages[record.english_passage_id].text
        assert record.target_answer in target_passages[record.target_passage_id].text
    assert result.counts["passage_not_found"] == 0


def test_qids_are_stable_and_distinct():
    first = [record.qid for record in mine(TOKYO_EN, TOKYO_JA).records]
    second = [record.qid for record in mine(TOKYO_EN, TOKYO_JA).records]
    assert first == second and len(set(first)) == 3
    assert clr_pt.make_qid("ja", 1, (0, 10), 2, (0, 5), "Q1") != clr_pt.make_qid("ja", 1, (0, 10), 2, (0, 5), "Q2")


def test_configurable_mask_and_rule_switches():
    config = ParallelRuleConfig(mask_token="<extra_id_0>", year_rule="ignore")
    result = mine(EINSTEIN_EN, EINSTEIN_DE, config)
    assert all("<extra_id_0>" in r.english_cloze and "<extra_id_0>" in r.target_cloze for r in result.records)
    assert len(result.records) == 2  # Without the year check the Munich sentences pass.
    strict = ParallelRuleConfig(min_shared_entities=2)
    assert [r.answer_entity for r in mine(EGYPT_EN, EGYPT_AR, strict).records] == ["Q1016"]
    tokyo = mine(TOKYO_EN, TOKYO_JA, strict)  # Only the Skytree sentences share two entities (with Japan).
    assert tokyo.counts["rejected/too_few_shared_entities"] == 2
    assert [r.answer_entity for r in tokyo.records] == ["Q184799"]


@pytest.mark.parametrize("field, value", [("year_rule", "sometimes"), ("max_length_ratio", 0.5),
                                          ("mask_token", " "), ("min_shared_entities", 0)])
def test_bad_rule_settings_are_refused(field, value):
    with pytest.raises(ValueError):
        ParallelRuleConfig(**{field: value})


@pytest.mark.parametrize("text, lang, years, numbers", [
    ("Bantinho has a population of 2,038,667 (2010).", "en", {2010}, (2038667.0,)),
    ("人口は約1400万人である。", "ja", set(), (14000000.0,)),
    ("Die Stadt hat 2,5 Millionen Einwohner und wurde 1237 gegründet.", "de", {1237}, (2500000.0,)),
    ("يبلغ عدد سكانها ١٬٢٠٠٬٠٠٠ نسمة منذ عام ١٩٩٠.", "ar", {1990}, (1200000.0,)),
    ("Население — 12,6 млн человек.", "ru", set(), (12600000.0,)),
    ("The Airbus A380 flew 1,500.5 km on 5 May.", "en", set(), (1500.5,)),
])
def test_quantities_are_read_in_every_script(text, lang, years, numbers):
    quantities = clr_pt_rule.extract_quantities(text, lang)
    assert quantities.years == frozenset(years) and quantities.numbers == numbers


def test_quantities_agree_within_tolerance_and_by_subset():
    config = ParallelRuleConfig()
    english = clr_pt_rule.extract_quantities("The river is 1,200 km (750 mi) long.", "en")
    japanese = clr_pt_rule.extract_quantities("全長は1200キロメートルである。", "ja")
    assert clr_pt_rule.quantities_agree(english, japanese, config) is None  # Conversions add numbers to one side.
    rounded = clr_pt_rule.extract_quantities("About 14 million people live there.", "en")
    exact = clr_pt_rule.extract_quantities("人口は13,960,000人である。", "ja")
    assert clr_pt_rule.quantities_agree(rounded, exact, config) is None
    other = clr_pt_rule.extract_quantities("人口は900万人である。", "ja")
    assert clr_pt_rule.quantities_agree(rounded, other, config) == "numbers_differ"


def test_audit_sample_is_reproducible_and_scores_hand_labels():
    records = [record.to_dict() for english, target in PAIRS for record in mine(english, target).records]
    sample = audit.audit_sample(records, 3)
    assert [r["qid"] for r in sample] == [r["qid"] for r in audit.audit_sample(reversed(records), 3)]
    table = audit.audit_table(sample, MASK).splitlines()
    assert table[0].split("\t") == list(audit.COLUMNS) and len(table) == 4
    assert all("[[" in line.split("\t")[5] and "[[" in line.split("\t")[6] for line in table[1:])
    labelled = [table[0]] + [line.replace("\t\t", "\ty\t", 1) for line in table[1:3]] + [
        table[3].replace("\t\t", "\tn\t", 1)]
    result = audit.score_audit("\n".join(labelled) + "\n", "ja.tsv")
    assert (result["labelled"], result["parallel"], result["unlabelled"]) == (3, 2, 0)
    assert result["precision"] == pytest.approx(2 / 3) and result["low"] < 2 / 3 < result["high"]
    with pytest.raises(UserError, match=r"ja\.tsv: line 2: label 'maybe'"):
        audit.score_audit("\n".join([table[0], table[1].replace("\t\t", "\tmaybe\t", 1)]), "ja.tsv")


def test_wilson_interval_matches_the_closed_form():
    low, high = audit.wilson_interval(180, 200)
    assert (round(low, 4), round(high, 4)) == (0.8506, 0.9343)
    assert audit.wilson_interval(0, 0) == (0.0, 1.0)
