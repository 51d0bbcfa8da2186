"""The invented world behind the demo wiki: entities with attributes, and the facts that relate them.

Countries contain cities, rivers and mountains; people are born in cities, study at universities and found
companies. Every fact is a `Fact(subject, relation, object)` whose object is another entity or a literal value
(year, number, occupation, industry). English has an article for every entity; each other language covers a
subset, denser for entities of its "home" countries, as real Wikipedias cover local topics best.
"""

import dataclasses
import random

from class_jax.demo.world.names import Name, NameMaker

ENTITY_TYPES = ("country", "city", "river", "mountain", "person", "university", "company")
OCCUPATIONS = ("physicist", "painter", "writer", "composer", "architect", "engineer", "politician", "chemist")
INDUSTRIES = ("shipbuilding", "software", "banking", "brewing", "textile", "steel", "publishing", "railway")

# Entities per type for each size. "default" is sized for a ~10-minute laptop demo, "small" for CI.
SIZES: dict[str, dict[str, int]] = {
    "small": {"country": 4, "city": 14, "river": 3, "mountain": 2, "person": 22, "university": 3, "company": 6,
              "red_person": 4},
    "default": {"country": 12, "city": 110, "river": 24, "mountain": 16, "person": 240, "university": 20,
                "company": 48, "red_person": 30},
}
# Share of non-home entities each language has an article for (home entities: HOME_COVERAGE).
LANGUAGE_COVERAGE = {"de": 0.55, "es": 0.5, "ru": 0.45, "ja": 0.4, "ar": 0.3, "ko": 0.3}
HOME_COVERAGE = 0.9


@dataclasses.dataclass
class Entity:
    """One thing the world talks about.

    Attributes:
      key: stable identifier ("city:3").
      kind: one of ENTITY_TYPES, or "red_person" (mentioned but without an article anywhere).
      name: the invented name (for people: given name, see `family`).
      family: family name of a person.
      gender: "m" or "f" for people, "" otherwise.
      country: key of the country the entity belongs to ("" for countries).
      languages: languages with an article about the entity.
      homonym: the entity shares its name with another one (both get disambiguated titles).
    """

    key: str
    kind: str
    name: Name
    family: Name | None = None
    gender: str = ""
    country: str = ""
    languages: list[str] = dataclasses.field(default_factory=list)
    homonym: bool = False


@dataclasses.dataclass(frozen=True)
class Fact:
    """A statement about a subject entity.

    Attributes:
      subject: key of the entity the fact is about.
      relation: the relation name (see demo_text templates).
      objects: the entity keys the fact mentions (linked in text), in template order ("O", "O2").
      values: literal values by placeholder ("Y" year, "N" number, "OCC" occupation, "IND" industry).
    """

    subject: str
    relation: str
    objects: tuple[str, ...] = ()
    values: tuple[tuple[str, object], ...] = ()

    def value(self, name: str) -> object:
        """The literal value of a placeholder."""
        return dict(self.values)[name]


@dataclasses.dataclass
class World:
    """All entities and facts, in a deterministic order."""

    entities: dict[str, Entity]
    facts: list[Fact]
    languages: tuple[str, ...]
    home_language: dict[str, str]  # country key -> language whose home it is

    def of_kind(self, kind: str) -> list[Entity]:
        """Entities of one type, in creation order."""
        return [entity for entity in self.entities.values() if entity.kind == kind]

    def facts_about(self, key: str) -> list[Fact]:
        """The facts whose subject is `key`, in creation order (the English article order)."""
        return [fact for fact in self.facts if fact.subject == key]


def build_world(size: str, seed: int, languages: tuple[str, ...]) -> World:
    """Generates the world.

    Args:
      size: a key of SIZES.
      seed: the random seed; equal seeds give equal worlds.
      languages: "en" first, then the other languages.

    Returns:
      The world.
    """
    counts = SIZES[size]
    rng = random.Random(seed)
    names = NameMaker(rng)
    entities: dict[str, Entity] = {}
    facts: list[Fact] = []

    def add(kind: str, index: int, **fields) -> Entity:
        entity = Entity(key=f"{kind}:{index}", kind=kind, **fields)
        entities[entity.key] = entity
        return entity

    countries = [add("country", i, name=names.make(2, 3)) for i in range(counts["country"])]
    others = [lang for lang in languages if lang != "en"]
    home_language = {country.key: others[i % len(others)] for i, country in enumerate(countries)}
    cities = [add("city", i, name=names.make(2, 3), country=countries[i % len(countries)].key)
              for i in range(counts["city"])]
    rivers = [add("river", i, name=names.make(2, 3), country=rng.choice(countries).key)
              for i in range(counts["river"])]
    mountains = [add("mountain", i, name=names.make(2, 3), country=rng.choice(countries).key)
                 for i in range(counts["mountain"])]
    university_cities = [cities[i * 3 % len(cities)] for i in range(counts["university"])]
    universities = [add("university", i, name=city.name, country=city.country)
                    for i, city in enumerate(university_cities)]
    people = [add("person", i, name=names.make(2, 2), family=names.make(2, 3), gender=rng.choice("mf"),
                  country=rng.choice(cities).country) for i in range(counts["person"])]
    red_people = [add("red_person", i, name=names.make(2, 2), family=names.make(2, 3), gender=rng.choice("mf"))
                  for i in range(counts["red_person"])]
    companies = [add("company", i, name=names.make(2, 3), country=rng.choice(cities).country)
                 for i in range(counts["company"])]
    # A few companies are named after a city: their titles need disambiguation, and a disambiguation page.
    for company, city in zip(companies[::7], cities[1::9]):
        company.name, company.homonym, city.homonym = city.name, True, True
        company.country = city.country

    cities_in = {country.key: [city for city in cities if city.country == country.key] for country in countries}

    def year(low: int, high: int) -> tuple[str, object]:
        return ("Y", rng.randint(low, high))

    for country in countries:
        capital = cities_in[country.key][0]
        facts.append(Fact(country.key, "country_capital", (capital.key,)))
        facts.append(Fact(country.key, "country_population", values=(("M", rng.randint(5, 20)),)))
        facts.append(Fact(country.key, "country_independence", values=(year(1800, 1990),)))
        neighbour = rng.choice([other for other in countries if other is not country])
        facts.append(Fact(country.key, "country_borders", (neighbour.key,)))
    for city in cities:
        facts.append(Fact(city.key, "city_country", (city.country,)))
        facts.append(Fact(city.key, "city_population", values=(("N", rng.randint(20, 3000) * 1000 +
                                                                   rng.randint(0, 999)),)))
        facts.append(Fact(city.key, "city_founded", values=(year(900, 1900),)))
        local_rivers = [river for river in rivers if river.country == city.country]
        if local_rivers and rng.random() < 0.7:
            facts.append(Fact(city.key, "city_river", (rng.choice(local_rivers).key,)))
    for river in rivers:
        facts.append(Fact(river.key, "river_country", (river.country,)))
        facts.append(Fact(river.key, "river_length", values=(("N", rng.randint(40, 2400)),)))
        local_mountains = [m for m in mountains if m.country == river.country]
        if local_mountains:
            facts.append(Fact(river.key, "river_source", (rng.choice(local_mountains).key,)))
    for mountain in mountains:
        facts.append(Fact(mountain.key, "mountain_country", (mountain.country,)))
        facts.append(Fact(mountain.key, "mountain_height", values=(("N", rng.randint(900, 7900)),)))
        facts.append(Fact(mountain.key, "mountain_first_ascent", values=(year(1780, 1960),)))
    for university, city in zip(universities, university_cities):
        facts.append(Fact(university.key, "university_city", (city.key,)))
        facts.append(Fact(university.key, "university_founded", values=(year(1200, 1950),)))
        facts.append(Fact(university.key, "university_students", values=(("N", rng.randint(20, 600) * 100),)))
    founders = rng.sample(people, len(companies))
    for person in people:
        birth = rng.randint(1800, 1975)
        birthplace = rng.choice(cities_in[person.country])
        occupation = rng.choice(OCCUPATIONS)
        facts.append(Fact(person.key, "person_occupation", (person.country,), (("OCC", occupation),)))
        facts.append(Fact(person.key, "person_born", (birthplace.key,), (("Y", birth),)))
        if rng.random() < 0.6:
            facts.append(Fact(person.key, "person_studied", (rng.choice(universities).key,)))
        if rng.random() < 0.25:
            facts.append(Fact(person.key, "person_colleague", (rng.choice(red_people).key,)))
        if birth < 1950 or rng.random() < 0.3:
            facts.append(Fact(person.key, "person_died", values=(("Y", birth + rng.randint(40, 90)),)))
    for company, founder in zip(companies, founders):
        headquarters = rng.choice(cities_in[company.country])
        founded = rng.randint(1850, 2010)
        facts.append(Fact(company.key, "company_city", (headquarters.key,),
                          (("IND", rng.choice(INDUSTRIES)),)))
        facts.append(Fact(company.key, "company_founded", (founder.key,), (("Y", founded),)))
        facts.append(Fact(company.key, "company_employees", values=(("N", rng.randint(2, 900) * 100),)))
        facts.append(Fact(founder.key, "person_founded", (company.key,), (("Y", founded),)))
    facts += _derived_facts(facts, entities, rng)
    world = World(entities=entities, facts=facts, languages=languages, home_language=home_language)
    _assign_languages(world, rng)
    return world


def _derived_facts(facts: list[Fact], entities: dict[str, Entity], rng: random.Random) -> list[Fact]:
    """Facts that follow from others: superlatives of countries, a river's city, alumni, marriages."""
    derived = []
    value = {(fact.subject, fact.relation): fact for fact in facts}
    for country in [e for e in entities.values() if e.kind == "country"]:
        for kind, measure, relation in (("river", "river_length", "country_longest_river"),
                                        ("mountain", "mountain_height", "country_highest_mountain")):
            local = [e for e in entities.values() if e.kind == kind and e.country == country.key]
            if local:
                top = max(local, key=lambda e, measure=measure: value[(e.key, measure)].value("N"))
                derived.append(Fact(country.key, relation, (top.key,)))
    for river in [e for e in entities.values() if e.kind == "river"]:
        on_river = [fact.subject for fact in facts if fact.relation == "city_river" and fact.objects[0] == river.key]
        if on_river:
            derived.append(Fact(river.key, "river_city", (on_river[0],)))
    for university in [e for e in entities.values() if e.kind == "university"]:
        alumni = [fact.subject for fact in facts
                  if fact.relation == "person_studied" and fact.objects[0] == university.key]
        if alumni:
            derived.append(Fact(university.key, "university_alumnus", (rng.choice(alumni),)))
    people = [e for e in entities.values() if e.kind == "person"]
    married = rng.sample(people, (len(people) // 3) * 2)
    for first, second in zip(married[::2], married[1::2]):
        year = max(value[(first.key, "person_born")].value("Y"), value[(second.key, "person_born")].value("Y"))
        year += rng.randint(20, 35)
        derived.append(Fact(first.key, "person_spouse", (second.key,), (("Y", year),)))
        derived.append(Fact(second.key, "person_spouse", (first.key,), (("Y", year),)))
    return derived


def _assign_languages(world: World, rng: random.Random) -> None:
    """Decides which languages have an article about each entity (English: all of them)."""
    for entity in world.entities.values():
        if entity.kind == "red_person":
            continue
        entity.languages = ["en"]
        home = world.home_language.get(entity.key if entity.kind == "country" else entity.country)
        for lang in world.languages[1:]:
            chance = 0.95 if entity.kind == "country" else (
                HOME_COVERAGE if lang == home else LANGUAGE_COVERAGE.get(lang, 0.4))
            if rng.random() < chance:
                entity.languages.append(lang)
