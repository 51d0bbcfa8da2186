"""The pages of one demo language: articles, redirects, disambiguation and list pages, other namespaces.

Articles are written like real ones: an infobox, sometimes an image with a linked caption, a bold lead sentence,
sections, `<ref>` citations, `{{citation needed}}`, a references section, external links and categories; so the
cleaner has real work to do. The prose is where the facts are: English states every fact of an entity, other
languages a random subset, partly reordered, so sentence pairs exist but must be found. The first mention of
another entity is linked (sometimes through a redirect title); mentions of entities without an article in this
language are red links or plain text, as on real wikis.

While writing, the builder counts what ingestion must find again: pages by kind, redirects (loops, broken),
links that survive cleaning and how many of them point at missing pages.
"""

import collections
import dataclasses
import random

from class_jax.demo.world.language import DemoLanguage, Slot
from class_jax.demo.world.facts import Entity, Fact, World
from class_jax.demo.world.dump_writer import DumpPage
from class_jax.corpus.titles import RedirectTable

# Which section a relation's sentence goes to ("lead": the first paragraph).
SECTION_OF = {
    "country_capital": "lead", "country_population": "demographics", "country_independence": "history",
    "country_borders": "geography", "city_country": "lead", "city_population": "demographics",
    "city_founded": "history", "city_river": "geography", "river_country": "lead", "river_length": "geography",
    "river_source": "geography", "mountain_country": "lead", "mountain_height": "geography",
    "mountain_first_ascent": "history", "university_city": "lead", "university_founded": "history",
    "university_students": "lead", "person_occupation": "lead", "person_born": "life", "person_studied": "life",
    "person_died": "life", "person_colleague": "career", "person_founded": "career", "company_city": "lead",
    "company_founded": "history", "company_employees": "lead", "country_longest_river": "geography",
    "country_highest_mountain": "geography", "river_city": "geography", "university_alumnus": "history",
    "person_spouse": "life",
}
SECTION_ORDER = ("lead", "history", "geography", "demographics", "life", "career")
# Probability that a non-English article keeps a (non-lead) fact, and that it reorders a section.
KEEP_FACT = 0.75
SHUFFLE_SECTION = 0.5
LINK_MISSING_ENTITY = 0.5
LINK_THROUGH_ALIAS = 0.2
MAKE_ALIAS = 0.6


@dataclasses.dataclass
class LanguageWiki:
    """Everything written for one language.

    Attributes:
      lang: the language code.
      pages: all pages in dump order (page ids increasing).
      titles: group -> article title; groups are entity keys, "dab:<name>" and "list:<country key>".
      page_ids: group -> page id of its article.
      counts: what ingestion must find (see `build_language_wiki`).
      stated_facts: facts the articles of this language state (for in-language questions).
    """

    lang: str
    pages: list[DumpPage] = dataclasses.field(default_factory=list)
    titles: dict[str, str] = dataclasses.field(default_factory=dict)
    page_ids: dict[str, int] = dataclasses.field(default_factory=dict)
    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    stated_facts: set[Fact] = dataclasses.field(default_factory=set)


class _ArticleWriter:
    """Writes one article, tracking which entities are already linked."""

    def __init__(self, builder: "_LanguageBuilder", subject: Entity):
        self.builder = builder
        self.language = builder.language
        self.subject = subject
        self.linked: set[str] = set()

    def mention(self, key: str) -> Slot:
        """A mention of another entity: a link on first mention, plain text after."""
        builder, entity = self.builder, self.builder.world.entities[key]
        surface = self.language.surface(entity)
        if key in self.linked:
            return Slot(surface, surface)
        self.linked.add(key)
        has_article = self.language.code in entity.languages
        if not has_article and entity.kind != "red_person" and builder.rng.random() >= LINK_MISSING_ENTITY:
            return Slot(surface, surface)
        target = self.language.title(entity)
        alias = builder.aliases.get(key)
        if alias and builder.rng.random() < LINK_THROUGH_ALIAS:
            target = alias
        return Slot(builder.link(target, surface), surface)

    def sentence(self, fact: Fact | None, relation: str, lead: bool) -> str:
        language, subject = self.language, self.subject
        surface = language.surface(subject)
        slots = {"S": Slot(f"'''{surface}'''" if lead else surface, surface)}
        for name, key in zip(("O",), fact.objects if fact else ()):
            slots[name] = self.mention(key)
        for name, value in (fact.values if fact else ()):
            text = language.literal(name, value, subject.gender)
            slots[name] = Slot(text, text)
        variants = language.fact_variants(relation)
        return language.render(self.builder.rng.choice(variants), slots, subject.gender)


class _LanguageBuilder:
    def __init__(self, world: World, lang: str, rng: random.Random):
        self.world = world
        self.language = DemoLanguage(lang, world)
        self.rng = rng
        self.wiki = LanguageWiki(lang)
        self.redirects = RedirectTable()
        self.aliases: dict[str, str] = {}
        self.article_titles: set[str] = set()
        self._references = 0

    # -- bookkeeping -----------------------------------------------------------------------------------------------

    def link(self, target: str, shown: str) -> str:
        """A prose link, counted (and counted as red when its target has no article)."""
        self.wiki.counts["links"] += 1
        final = self.redirects.resolve(target)
        if final is None or final not in self.article_titles:
            self.wiki.counts["red_links"] += 1
        return f"[[{target}]]" if target == shown else f"[[{target}|{shown}]]"

    def add_page(self, title: str, text: str, namespace: int = 0, redirect: str | None = None,
                 group: str | None = None) -> None:
        self.wiki.pages.append(DumpPage(page_id=0, title=title, namespace=namespace, text=text, redirect=redirect))
        if group is not None:
            self.wiki.titles[group] = title

    # -- plan: which pages exist ---------------------------------------------------------------------------------

    def plan(self) -> None:
        """Decides titles of all articles, disambiguation and list pages, and redirects, before any text."""
        lang, language = self.language.code, self.language
        for entity in self.world.entities.values():
            if lang in entity.languages:
                self.wiki.titles[entity.key] = language.title(entity)
        for group, _ in self._disambiguation_groups():
            self.wiki.titles[group] = language.base_name(self._dab_members(group)[0])
        for country in self.world.of_kind("country"):
            if lang in country.languages and len(self._cities_of(country)) >= 3:
                self.wiki.titles[f"list:{country.key}"] = language.data["list"]["title"].format(
                    country=language.surface(country))
        self.article_titles = set(self.wiki.titles.values())
        for entity in self.world.entities.values():
            alias = language.alias(entity) if lang in entity.languages else None
            # English needs one company alias to build its double redirect on (see write_redirects).
            needed = lang == "en" and entity.kind == "company" and not any(
                key.startswith("company:") for key in self.aliases)
            if alias and alias not in self.article_titles and (needed or self.rng.random() < MAKE_ALIAS):
                self.aliases[entity.key] = alias
                self.redirects.add(alias, language.title(entity))

    def _disambiguation_groups(self) -> list[tuple[str, list[Entity]]]:
        groups = collections.defaultdict(list)
        for entity in self.world.entities.values():
            if entity.homonym:
                groups[f"dab:{entity.name.render('latin')}"].append(entity)
        return [(group, members) for group, members in groups.items()
                if any(self.language.code in member.languages for member in members)]

    def _dab_members(self, group: str) -> list[Entity]:
        return [entity for entity in self.world.entities.values()
                if entity.homonym and f"dab:{entity.name.render('latin')}" == group]

    def _cities_of(self, country: Entity) -> list[Entity]:
        return [city for city in self.world.of_kind("city") if city.country == country.key]

    # -- pages ---------------------------------------------------------------------------------------------------

    def write_articles(self) -> None:
        for entity in self.world.entities.values():
            if self.language.code in entity.languages:
                self.add_page(self.language.title(entity), self._article_text(entity), group=entity.key)
                self.wiki.counts["articles"] += 1

    def _chosen_facts(self, entity: Entity) -> dict[str, list[Fact]]:
        facts = self.world.facts_about(entity.key)
        english = self.language.code == "en"
        sections: dict[str, list[Fact]] = collections.defaultdict(list)
        for fact in facts:
            section = SECTION_OF[fact.relation]
            is_lead = section == "lead" and not sections["lead"]
            if english or is_lead or self.rng.random() < KEEP_FACT:
                sections[section].append(fact)
        if not english:
            for section, members in sections.items():
                first = members[:1] if section == "lead" else []
                rest = members[len(first):]
                if self.rng.random() < SHUFFLE_SECTION:
                    self.rng.shuffle(rest)
                sections[section] = first + rest
        return sections

    def _article_text(self, entity: Entity) -> str:
        language, data = self.language, self.language.data
        writer = _ArticleWriter(self, entity)
        sections = self._chosen_facts(entity)
        country = self.world.entities.get(entity.country)
        parts = []
        if language.code == "en":
            parts.append("{{Use dmy dates|date=January 2024}}")
        infobox_link = self.wiki.titles.get(entity.country, language.surface(country)) if country else None
        infobox = [f"{{{{{data['infobox'][entity.kind]}", f"| name = {language.surface(entity)}",
                   f"| image = {entity.name.render('latin')}.jpg"]
        if infobox_link:
            infobox.append(f"| country = [[{infobox_link}]]")
        parts.append("\n".join(infobox) + "\n}}")
        if country and self.rng.random() < 0.3:
            parts.append(f"[[{data['namespaces']['6']}:{entity.name.render('latin')}.jpg|thumb|"
                         f"{data['file_caption'].format(name=language.surface(entity))} ([[{infobox_link}]])]]")
        lead_sentences = []
        if entity.kind == "country":
            lead_sentences.append(writer.sentence(None, "country_lead", lead=True))
        for number, fact in enumerate(sections.get("lead", [])):
            lead_sentences.append(writer.sentence(fact, fact.relation, lead=not lead_sentences and number == 0))
            self.wiki.stated_facts.add(fact)
        body = {name: [] for name in SECTION_ORDER}
        body["lead"] = lead_sentences
        for section in SECTION_ORDER[1:]:
            for fact in sections.get(section, []):
                body[section].append(writer.sentence(fact, fact.relation, lead=False))
                self.wiki.stated_facts.add(fact)
        fillers = data["fillers"][entity.kind]
        for filler in self.rng.sample(fillers, self.rng.randint(min(2, len(fillers)), min(5, len(fillers)))):
            section = self.rng.choice([name for name in SECTION_ORDER if body[name]])
            body[section].insert(self.rng.randint(1, len(body[section])), filler)
        for section in SECTION_ORDER:
            if not body[section]:
                continue
            if section != "lead":
                parts.append(f"== {data['sections'][section]} ==")
            parts.append(language.join_sentences([self._decorate(s, entity) for s in body[section]]))
        parts.append(f"== {data['sections']['references']} ==\n{data['reflist']}")
        parts.append(f"== {data['sections']['links']} ==\n"
                     f"* [https://example.org/{language.code}/{entity.key.replace(':', '/')} {data['external_link']}]")
        category = data["categories"][entity.kind].format(country=language.surface(country) if country else "")
        parts.append(f"[[{data['namespaces']['14']}:{category}]]")
        return "\n\n".join(parts) + "\n"

    def _decorate(self, sentence: str, entity: Entity) -> str:
        """Adds citations and maintenance templates after some sentences."""
        roll = self.rng.random()
        if roll < 0.25:
            self._references += 1
            return (f"{sentence}<ref>{{{{{self.language.data['cite']}|url=https://example.org/{entity.key}/"
                    f"{self._references}|title={self.language.surface(entity)}}}}}</ref>")
        if roll < 0.3:
            return f"{sentence}<ref name=\"main\" />"
        if roll < 0.33:
            return sentence + self.language.data["citation_needed"]
        return sentence

    def write_disambiguation_pages(self) -> None:
        language, data = self.language, self.language.data["disambiguation"]
        for group, members in self._disambiguation_groups():
            name = language.base_name(members[0])
            lines = [language.render(data["intro"], {"S": Slot(f"'''{name}'''", name)})]
            for member in members:
                target = language.title(member)
                description = data[member.kind].format(
                    country=language.surface(self.world.entities[member.country]),
                    city=self._headquarters_name(member))
                lines.append(data["item"].format(link=self.link(target, target), description=description))
            lines.append(f"{{{{{data['template']}}}}}")
            self.add_page(name, "\n".join(lines) + "\n", group=group)
            self.wiki.counts["articles"] += 1
            self.wiki.counts["disambiguation_pages"] += 1

    def _headquarters_name(self, entity: Entity) -> str:
        for fact in self.world.facts_about(entity.key):
            if fact.relation == "company_city":
                return self.language.surface(self.world.entities[fact.objects[0]])
        return ""

    def write_list_pages(self) -> None:
        language, data = self.language, self.language.data["list"]
        for country in self.world.of_kind("country"):
            group = f"list:{country.key}"
            if group not in self.wiki.titles:
                continue
            country_link = self.link(language.title(country), language.surface(country))
            lines = [data["intro"].format(country=country_link)]
            for city in self._cities_of(country):
                lines.append(data["item"].format(link=self.link(language.title(city), language.surface(city))))
            self.add_page(self.wiki.titles[group], "\n".join(lines) + "\n", group=group)
            self.wiki.counts["articles"] += 1
            self.wiki.counts["list_pages"] += 1

    def write_redirects(self) -> None:
        word = self.language.data["redirect"]
        for alias, target in list(self.redirects.targets.items()):
            self.add_page(alias, f"{word} [[{target}]]\n", redirect=target)
            self.wiki.counts["redirects"] += 1
        if self.language.code != "en":
            return
        # English also gets the oddities of a real dump: a double redirect, a loop and a broken redirect.
        company = next(key for key in self.aliases if key.startswith("company:"))
        chain = self.language.data["chain_alias"].format(name=self.language.base_name(self.world.entities[company]))
        loop = [f"Old {self.language.base_name(self.world.entities[company])} works",
                f"Former {self.language.base_name(self.world.entities[company])} works"]
        extra = [(chain, self.aliases[company]), (loop[0], loop[1]), (loop[1], loop[0]),
                 (f"{chain} Museum", f"Museum of {chain}")]
        for title, target in extra:
            self.redirects.add(title, target)
            self.add_page(title, f"{word} [[{target}]]\n", redirect=target)
            self.wiki.counts["redirects"] += 1
        self.wiki.counts["redirect_loops"] += 2
        self.wiki.counts["broken_redirects"] += 1

    def write_other_namespaces(self) -> None:
        data = self.language.data
        for kind in sorted(data["infobox"]):
            self.add_page(f"{data['namespaces']['10']}:{data['infobox'][kind]}", "{{{name|}}}\n", namespace=10)
        self.add_page(f"{data['namespaces']['4']}:Demo", "Demo wiki. [[Main page]]\n", namespace=4)
        self.wiki.counts["other_namespace_pages"] += len(data["infobox"]) + 1

    def number_pages(self, first_id: int) -> None:
        """Shuffles pages (real dumps mix kinds) and assigns increasing ids with gaps."""
        self.rng.shuffle(self.wiki.pages)
        page_id = first_id
        numbered = []
        for page in self.wiki.pages:
            page_id += self.rng.randint(1, 9)
            numbered.append(dataclasses.replace(page, page_id=page_id))
        self.wiki.pages = numbered
        title_to_id = {page.title: page.page_id for page in numbered if page.namespace == 0}
        self.wiki.page_ids = {group: title_to_id[title] for group, title in self.wiki.titles.items()}
        self.wiki.counts["pages"] = len(numbered)
        self.wiki.counts["main_namespace_pages"] = sum(page.namespace == 0 for page in numbered)


def build_language_wiki(world: World, lang: str, seed: int) -> LanguageWiki:
    """Writes all pages of one language.

    Args:
      world: the world.
      lang: the language.
      seed: seed of this language's random choices.

    Returns:
      The pages with expected counts: pages, main_namespace_pages, articles, redirects, redirect_loops,
      broken_redirects, disambiguation_pages, list_pages, other_namespace_pages, links (prose links that survive
      cleaning) and red_links (those whose target has no article).
    """
    builder = _LanguageBuilder(world, lang, random.Random(seed))
    builder.plan()
    builder.write_articles()
    builder.write_disambiguation_pages()
    builder.write_list_pages()
    builder.write_redirects()
    builder.write_other_namespaces()
    builder.number_pages(first_id=10 + 1000 * world.languages.index(lang))
    return builder.wiki
