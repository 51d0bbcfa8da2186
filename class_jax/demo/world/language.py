"""One demo language: its templates (templates/<lang>.json) and how entities and facts are written in it.

The JSON files hold everything language-specific: title patterns, localised namespace and template names,
sentence templates per relation (two paraphrases each, gendered where the grammar needs it), question templates
and filler sentences. Placeholders in templates:
  {S} subject, {O} object entity, {Y} year, {N} number, {M} millions, {OCC} occupation, {A_OCC} occupation with
  the English indefinite article, {IND} industry; Korean adds the particle after the placeholder
  ({S은}, {O이}, {O을}, {O와}, {O으로}) and the right form (은/는, 이/가, ...) is chosen from the word's last
  syllable.
"""

import dataclasses
import functools
import importlib.resources
import json
import re
from typing import Any

from class_jax.demo.world.facts import Entity, World

DEFAULT_LANGUAGES = ("en", "de", "es", "ja", "ru", "ar", "ko")
_PLACEHOLDER = re.compile(r"\{(S|O|Y|N|M|OCC|A_OCC|IND)(은|이|을|와|으로)?\}")
_KOREAN_PARTICLES = {"은": ("은", "는"), "이": ("이", "가"), "을": ("을", "를"), "와": ("과", "와"),
                     "으로": ("으로", "로")}
_HANGUL_RIEUL_FINAL = 8


@dataclasses.dataclass(frozen=True)
class Slot:
    """What a placeholder stands for: the wikitext to insert and its plain text (for particle agreement)."""

    wikitext: str
    plain: str


def _korean_particle(word: str, particle: str) -> str:
    with_final, without_final = _KOREAN_PARTICLES[particle]
    last = word[-1:] if word else ""
    if not ("\uac00" <= last <= "\ud7a3"):
        return without_final
    final = (ord(last) - 0xAC00) % 28
    if particle == "으로" and final == _HANGUL_RIEUL_FINAL:
        return without_final  # Nouns ending in ㄹ take 로, not 으로.
    return with_final if final else without_final


@functools.lru_cache(maxsize=None)
def _load(lang: str) -> dict[str, Any]:
    resource = importlib.resources.files("class_jax.demo.world").joinpath("templates", f"{lang}.json")
    with resource.open("r", encoding="utf-8") as f:
        return json.load(f)


def available_languages() -> tuple[str, ...]:
    """Languages that have a template file, English first."""
    folder = importlib.resources.files("class_jax.demo.world").joinpath("templates")
    codes = sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".json"))
    return tuple(["en"] + [code for code in codes if code != "en"])


class DemoLanguage:
    """Writes the world's entities and facts in one language.

    Args:
      lang: a language with a template file.
      world: the world (for objects referenced by titles, e.g. a university's city).
    """

    def __init__(self, lang: str, world: World):
        self.code = lang
        self.data = _load(lang)
        self.world = world
        self.script: str = self.data["script"]

    # -- names and titles --------------------------------------------------------------------------------------

    def base_name(self, entity: Entity) -> str:
        """The entity's own name in this script (a person's full name)."""
        if entity.family is not None:
            return entity.name.render(self.script) + self.data["person_separator"] + entity.family.render(self.script)
        return entity.name.render(self.script)

    def _pattern(self, table: str, entity: Entity) -> str | None:
        pattern = self.data[table].get(entity.kind)
        return pattern.format(name=self.base_name(entity)) if pattern else None

    def surface(self, entity: Entity) -> str:
        """How the entity is written in running text."""
        return self._pattern("surfaces", entity) or self._pattern("titles", entity) or self.base_name(entity)

    def title(self, entity: Entity) -> str:
        """The title of the entity's article (disambiguated for homonyms)."""
        title = self._pattern("titles", entity) or self.base_name(entity)
        if entity.homonym:
            title = f"{title} ({self.data['disambiguator'][entity.kind]})"
        return title

    def alias(self, entity: Entity) -> str | None:
        """An alternative title that redirects to the article (e.g. "Republic of X"), or None."""
        pattern = self.data["aliases"].get(entity.kind)
        if not pattern:
            return None
        if entity.kind == "person":
            return pattern.format(initial=entity.name.render(self.script)[0],
                                  family=entity.family.render(self.script))
        return pattern.format(name=self.base_name(entity))

    # -- literals ----------------------------------------------------------------------------------------------

    def number(self, value: int) -> str:
        """An integer with this language's digit grouping."""
        return f"{value:,}".replace(",", self.data["number"]["group"])

    def millions(self, value: int) -> str:
        """"12 million", "12 Millionen", "1200万", ..."""
        factor = self.data["number"].get("millions_factor", 1)
        return self.data["number"]["millions"].format(N=value * factor)

    def occupation(self, key: str, gender: str) -> str:
        """The occupation noun in the subject's gender."""
        male, female = self.data["occupations"][key]
        return female if gender == "f" else male

    def literal(self, slot: str, value: object, gender: str = "") -> str:
        """The text of a literal slot (Y, N, M, OCC, IND) as written in sentences and answers."""
        if slot == "Y":
            return str(value)
        if slot == "N":
            return self.number(int(value))
        if slot == "M":
            return self.millions(int(value))
        if slot == "OCC":
            return self.occupation(str(value), gender)
        if slot == "IND":
            return self.data["industries"][str(value)]
        raise ValueError(f"unknown literal slot {slot!r}")

    # -- templates ---------------------------------------------------------------------------------------------

    def fact_variants(self, relation: str) -> list[Any]:
        """The paraphrases of a relation (strings, or {"m": ..., "f": ...} when gendered)."""
        return self.data["facts"][relation]

    def question_template(self, question_type: str) -> Any | None:
        """The question template of "relation:slot", or None when the language has none."""
        return self.data["questions"].get(question_type)

    def render(self, template: Any, slots: dict[str, Slot], gender: str = "") -> str:
        """Fills a template.

        Args:
          template: a template string, or a {"m", "f"} pair chosen by `gender`.
          slots: placeholder name -> what to insert.
          gender: the subject's gender ("m", "f" or "").

        Returns:
          The wikitext.

        Raises:
          KeyError: the template uses a placeholder without a slot.
        """
        if isinstance(template, dict):
            template = template["f" if gender == "f" else "m"]

        def fill(match: re.Match) -> str:
            name, particle = match.group(1), match.group(2)
            if name == "A_OCC":
                occupation = slots["OCC"].plain
                return ("an " if occupation[:1] in "aeiou" else "a ") + occupation
            slot = slots[name]
            return slot.wikitext + (_korean_particle(slot.plain, particle) if particle else "")

        return _PLACEHOLDER.sub(fill, template)

    def join_sentences(self, sentences: list[str]) -> str:
        """Sentences of one paragraph (Japanese writes them without spaces)."""
        return ("" if self.code in ("ja", "zh") else " ").join(sentences)
