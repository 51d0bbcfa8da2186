"""XOR-TyDi-style question sets over the demo world.

Two kinds, both asked in every non-English language about facts of the world:
  * XOR-Retrieve ("eng span"): the gold answer is the English surface form (entity name, year, number) as it is
    written in the English article, which states every fact; the asking language's wiki may lack the fact.
  * XOR-Full: the gold answer is written in the asking language; most questions ask facts that the language's
    own articles state, some only English has (so the answer must be carried across languages).
Records use the real files' fields `{"id", "question", "answers", "lang", "split"}` and ids are signed 64-bit
integers as strings, like XOR-TyDi's.
"""

import hashlib
import random

from class_jax.demo.world.articles import LanguageWiki
from class_jax.demo.world.language import DemoLanguage, Slot
from class_jax.demo.world.facts import Fact, World

# Questions per language and kind.
QUESTIONS_PER_LANGUAGE = {"small": 12, "default": 250}
DEV_FRACTION = 0.3
FULL_FROM_OWN_WIKI = 0.7
FILES = {("retrieve", "train"): "xor_train_retrieve_eng_span.jsonl",
         ("retrieve", "dev"): "xor_dev_retrieve_eng_span_v1_1.jsonl",
         ("full", "train"): "xor_train_full.jsonl",
         ("full", "dev"): "xor_dev_full_v1_1.jsonl"}


def question_id(*parts: str) -> str:
    """A stable signed 64-bit id, as a string (XOR-TyDi's id style)."""
    digest = hashlib.sha1("|".join(parts).encode("utf-8")).digest()
    return str(int.from_bytes(digest[:8], "big", signed=True))


def _answer(language: DemoLanguage, world: World, fact: Fact, slot: str) -> str:
    if slot == "O":
        return language.surface(world.entities[fact.objects[0]])
    return language.literal(slot, fact.value(slot), world.entities[fact.subject].gender)


def _candidates(world: World, language: DemoLanguage) -> list[tuple[Fact, str]]:
    """(fact, slot) pairs the language can ask about; homonyms are skipped (their questions are ambiguous)."""
    pairs = []
    for fact in world.facts:
        subject = world.entities[fact.subject]
        if subject.homonym or subject.kind == "red_person":
            continue
        for slot in ["O"] * bool(fact.objects) + [name for name, _ in fact.values]:
            if language.question_template(f"{fact.relation}:{slot}") is not None:
                pairs.append((fact, slot))
    return pairs


def build_questions(world: World, wikis: dict[str, LanguageWiki], size: str,
                    seed: int) -> dict[str, list[dict[str, object]]]:
    """Builds the four question files.

    Args:
      world: the world.
      wikis: the written wikis per language (for the facts each language states).
      size: "small" or "default".
      seed: random seed.

    Returns:
      File name -> records, in a fixed order.
    """
    count = QUESTIONS_PER_LANGUAGE[size]
    english = DemoLanguage("en", world)
    files: dict[str, list[dict[str, object]]] = {name: [] for name in FILES.values()}
    for lang in world.languages:
        if lang == "en":
            continue
        rng = random.Random(f"{seed}:questions:{lang}")
        language = DemoLanguage(lang, world)
        candidates = _candidates(world, language)
        own = [pair for pair in candidates if pair[0] in wikis[lang].stated_facts]
        other = [pair for pair in candidates if pair[0] not in wikis[lang].stated_facts]
        retrieve = rng.sample(candidates, min(count, len(candidates)))
        from_own = min(len(own), round(count * FULL_FROM_OWN_WIKI))
        full = rng.sample(own, from_own) + rng.sample(other, min(len(other), count - from_own))
        for kind, pairs, answer_language in (("retrieve", retrieve, english), ("full", full, language)):
            for fact, slot in pairs:
                subject = world.entities[fact.subject]
                surface = language.surface(subject)
                template = language.question_template(f"{fact.relation}:{slot}")
                # The same question has the same id and split in both kinds, as in XOR-TyDi.
                identifier = question_id(lang, fact.subject, fact.relation, slot)
                split = "dev" if int(identifier) % 1000 < DEV_FRACTION * 1000 else "train"
                files[FILES[(kind, split)]].append({
                    "id": identifier,
                    "question": language.render(template, {"S": Slot(surface, surface)}, subject.gender),
                    "answers": [_answer(answer_language, world, fact, slot)],
                    "lang": lang,
                    "split": split,
                })
    return files
