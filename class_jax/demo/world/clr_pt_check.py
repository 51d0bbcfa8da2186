"""Precision and recall of the CLR-PT parallel rule on the generated demo wiki, whose facts are known.

The demo wiki is a pure function of (size, seed, languages) (demo_wiki.py), so the world behind it can be rebuilt
from its manifest. Every article sentence that states a fact states it in one template of its language, which
names the fact's object entities and literal values exactly as `DemoLanguage` writes them. A sentence therefore
expresses fact F of the article's subject when it contains every one of F's object names and values, and no other
fact of that subject with more of them fits (filler sentences contain none). Two sentences of one entity's English
and target-language articles are truly parallel when they express the same fact.

  precision = mined pairs whose two sentences express the same fact / mined pairs
  recall    = facts expressed in both articles of a pair that some mined pair found / such facts
  recall_minable = the same, counting only facts that name an entity with an article in both languages (only
                   such an entity is linked or named on both sides, joined by the entity table, and maskable)
"""

import collections
import os
from typing import Callable, Iterable, Mapping

from class_jax.corpus import corpus_io
from class_jax.demo.world import wiki as demo_wiki
from class_jax.corpus import sentences
from class_jax.demo.world.language import DemoLanguage
from class_jax.demo.world.facts import Fact, World, build_world

FactKey = tuple[str, str, tuple[str, ...], tuple]


def _fact_key(fact: Fact) -> FactKey:
    return (fact.subject, fact.relation, fact.objects, fact.values)


class _FactMatcher:
    """Which fact of an article's subject a sentence of one language expresses."""

    def __init__(self, world: World, lang: str):
        self.world = world
        self.language = DemoLanguage(lang, world)
        self.entity_of_title = {self.language.title(entity): entity.key for entity in world.entities.values()
                                if lang in entity.languages}
        self._signatures: dict[str, list[tuple[Fact, tuple[str, ...]]]] = {}

    def signatures(self, subject: str) -> list[tuple[Fact, tuple[str, ...]]]:
        if subject not in self._signatures:
            gender = self.world.entities[subject].gender
            rows = []
            for fact in self.world.facts_about(subject):
                parts = [self.language.surface(self.world.entities[key]) for key in fact.objects]
                parts += [self.language.literal(name, value, gender) for name, value in fact.values]
                rows.append((fact, tuple(parts)))
            self._signatures[subject] = rows
        return self._signatures[subject]

    def fact_of(self, subject: str, sentence: str) -> FactKey | None:
        """The fact the sentence states, or None (no fact, or two facts fit equally well)."""
        # The subject's own name may contain another entity's ("University of Doganba" and the city Doganba).
        sentence = sentence.replace(self.language.surface(self.world.entities[subject]), "\x00")
        fitting = [(len(parts), fact) for fact, parts in self.signatures(subject)
                   if parts and all(part in sentence for part in parts)]
        if not fitting:
            return None
        best = max(size for size, _ in fitting)
        facts = {_fact_key(fact) for size, fact in fitting if size == best}
        return facts.pop() if len(facts) == 1 else None


def _article_facts(corpus_dir: str | os.PathLike, lang: str, matcher: _FactMatcher) -> dict[str, set[FactKey]]:
    """Entity key -> the facts its article in `lang` states."""
    stated: dict[str, set[FactKey]] = collections.defaultdict(set)
    for article in corpus_io.iter_articles(corpus_dir, lang):
        subject = matcher.entity_of_title.get(article.title)
        if subject is None:
            continue
        for start, end in sentences.split_sentences(article.text, lang):
            fact = matcher.fact_of(subject, article.text[start:end])
            if fact is not None:
                stated[subject].add(fact)
    return stated


def evaluate_demo_clr_pt(demo_dir: str | os.PathLike, corpus_dir: str | os.PathLike,
                         records: Iterable[Mapping], mask_token: str) -> dict[str, dict]:
    """Scores mined CLR-PT records against the demo world's facts.

    Args:
      demo_dir: the folder written by `class-jax make-demo-wiki`.
      corpus_dir: the corpus ingested from it.
      records: mined CLR-PT records (fields lang, english_cloze, target_cloze, answer, target_answer,
        english_title, target_title).
      mask_token: the mask used in the clozes.

    Returns:
      Per target language: mined, correct, wrong, precision, gold (facts stated in both articles of a pair),
      gold_minable (those naming an entity with articles in both languages), found, recall, recall_minable;
      ratios are None without a denominator.

    Raises:
      UserError: demo_dir holds no demo wiki.
    """
    manifest = demo_wiki.read_manifest(demo_dir)
    languages = tuple(manifest["languages"])
    world = build_world(manifest["size"], manifest["seed"], languages)
    matchers = {lang: _FactMatcher(world, lang) for lang in languages}
    english_facts = _article_facts(corpus_dir, "en", matchers["en"])
    by_lang: dict[str, list[Mapping]] = collections.defaultdict(list)
    for record in records:
        by_lang[record["lang"]].append(record)
    report = {}
    for lang in sorted(by_lang.keys() | (set(languages) - {"en"})):
        if lang not in matchers:
            continue
        target_facts = _article_facts(corpus_dir, lang, matchers[lang])
        gold = {(subject, fact) for subject, facts in target_facts.items()
                for fact in facts & english_facts.get(subject, set())}
        correct, found = 0, set()
        for record in by_lang.get(lang, []):
            subject = matchers["en"].entity_of_title.get(record["english_title"])
            english = record["english_cloze"].replace(mask_token, record["answer"], 1)
            target = record["target_cloze"].replace(mask_token, record["target_answer"], 1)
            english_fact = matchers["en"].fact_of(subject, english) if subject else None
            target_fact = matchers[lang].fact_of(subject, target) if subject else None
            if english_fact is not None and english_fact == target_fact:
                correct += 1
                found.add((subject, english_fact))
        mined = len(by_lang.get(lang, []))
        # A fact can be mined only where it names an entity that has an article in both languages: only then do
        # both sentences link (or name) something the entity table joins.
        minable = {item for item in gold
                   if any({"en", lang} <= set(world.entities[key].languages) for key in item[1][2])}
        report[lang] = {
            "mined": mined, "correct": correct, "wrong": mined - correct,
            "precision": correct / mined if mined else None,
            "gold": len(gold), "gold_minable": len(minable), "found": len(found & gold),
            "recall": len(found & gold) / len(gold) if gold else None,
            "recall_minable": len(found & minable) / len(minable) if minable else None,
        }
    return report


def format_report(report: Mapping[str, Mapping]) -> list[str]:
    """One printable line per language."""

    def percent(value: float | None) -> str:
        return "  n/a" if value is None else f"{100 * value:5.1f}"

    lines = ["lang  mined  correct  precision%  gold  minable  found  recall%  recall_minable%"]
    for lang, row in report.items():
        lines.append(f"{lang:<4}  {row['mined']:>5}  {row['correct']:>7}  {percent(row['precision']):>10}  "
                     f"{row['gold']:>4}  {row['gold_minable']:>7}  {row['found']:>5}  {percent(row['recall']):>7}  "
                     f"{percent(row['recall_minable']):>15}")
    return lines


def checker(demo_dir: str | os.PathLike, corpus_dir: str | os.PathLike,
            mask_token: str) -> Callable[[list[dict]], dict[str, dict]]:
    """A `MiningConfig.clr_pt_check` that scores mined records against this demo wiki and prints the table.

    Args:
      demo_dir: the folder written by `class-jax make-demo-wiki`.
      corpus_dir: the corpus ingested from it.
      mask_token: the mask used in the clozes.

    Returns:
      records -> the report of `evaluate_demo_clr_pt`.
    """

    def check(records: list[dict]) -> dict[str, dict]:
        report = evaluate_demo_clr_pt(demo_dir, corpus_dir, records, mask_token)
        print("CLR-PT rule against the demo wiki's facts:")
        print("\n".join(format_report(report)))
        return report

    return check
