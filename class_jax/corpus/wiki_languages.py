"""Per-language knowledge the wikitext cleaner needs: namespaces, interwiki prefixes, page-kind markers.

Everything here is data, kept apart from the parsing code so it can be extended (a new language, a new
disambiguation template) without touching the parser. Dumps carry their own localised namespace names in
`<siteinfo>`; the defaults below are used for raw wikitext without a dump around it and as aliases that
MediaWiki accepts in every language (e.g. `Image:` and `File:`).
"""

import dataclasses
import re
from typing import Any, Mapping

from class_jax.runtime.errors import UserError

# Wikipedia language editions (interlanguage-link prefixes). Any prefix listed here turns `[[xx:Title]]` into an
# interlanguage link, which is not a link inside the page.
WIKIPEDIA_LANGUAGE_CODES: frozenset[str] = frozenset("""
aa ab ace ady af ak als alt am ami an ang anp ar arc ary arz as ast atj av avk awa ay az azb ba ban bar bat-smg
bbc bcl bdr be be-tarask be-x-old bew bg bh bi bjn blk bm bn bo bpy br bs btm bug bxr ca cbk-zam cdo ce ceb ch cho
chr chy ckb co cr crh cs csb cu cv cy da dag de dga din diq dsb dtp dty dv dz ee el eml en eo es et eu ext fa fat
ff fi fiu-vro fj fo fon fr frp frr fur fy ga gag gan gcr gd gl glk gn gom gor got gpe gu guc gur guw gv ha hak haw
he hi hif ho hr hsb ht hu hy hyw hz ia iba id ie ig igl ii ik ilo inh io is it iu ja jam jbo jv ka kaa kab kbd kbp
kcg kg kge ki kj kk kl km kn knc ko koi kr krc ks ksh ku kus kv kw ky la lad lb lbe lez lfn lg li lij lld lmo ln
lo lrc lt ltg lv lzh mad mai map-bms mdf mg mh mhr mi min mk ml mn mni mnw mo mos mr mrj ms mt mus mwl my myv mzn
na nah nan nap nds nds-nl ne new ng nia nl nn no nov nqo nr nrm nso ny oc olo om or os pa pag pam pap pcd pcm pdc
pfl pi pih pl pms pnb pnt ps pt pwn qu rm rmy rn ro roa-rup roa-tara rsk ru rue rup rw sa sah sat sc scn sco sd se
sg sh shi shn si simple sk skr sl sm smn sn so sq sr srn ss st stq su sv sw syl szl szy ta tay tcy tdd te tet tg
th ti tig tk tl tly tn to tpi tr trv ts tt tum tw ty tyv udm ug uk ur uz ve vec vep vi vls vo wa war wo wuu xal
xh xmf yi yo yue za zea zgh zh zh-classical zh-min-nan zh-yue zu
""".split())

# Interwiki prefixes to other projects and external sites: `[[wikt:word]]` shows text but is no article link.
INTERWIKI_PREFIXES: frozenset[str] = frozenset("""
w wikipedia wikt wiktionary n wikinews b wikibooks q wikiquote s wikisource species wikispecies v wikiversity
voy wikivoyage wmf wikimedia foundation c commons m meta metawikimedia mw mediawikiwiki d wikidata phab
phabricator doi hdl arxiv rfc pmid google imdbname imdbtitle oeis iarchive archive outreach incubator wikitech
translatewiki gerrit toollabs sourceforge mailarchive wmdoc wikifunctions f
""".split())

# Canonical (English) namespace names, valid on every wiki in addition to the localised ones.
CANONICAL_NAMESPACES: dict[str, int] = {
    "media": -2, "special": -1, "talk": 1, "user": 2, "user talk": 3, "project": 4, "wikipedia": 4, "wp": 4,
    "project talk": 5, "wikipedia talk": 5, "file": 6, "image": 6, "file talk": 7, "image talk": 7,
    "mediawiki": 8, "mediawiki talk": 9, "template": 10, "template talk": 11, "help": 12, "help talk": 13,
    "category": 14, "category talk": 15, "portal": 100, "portal talk": 101, "draft": 118, "draft talk": 119,
    "timedtext": 710, "timedtext talk": 711, "module": 828, "module talk": 829, "book": 108, "book talk": 109,
}

MAIN_NAMESPACE = 0
FILE_NAMESPACES = frozenset({-2, 6})
CATEGORY_NAMESPACE = 14
_FILE, _CATEGORY, _TEMPLATE = 6, 14, 10


@dataclasses.dataclass(frozen=True)
class LanguageProfile:
    """How one language edition marks things the cleaner and page classifier must recognise.

    Attributes:
      code: Wikipedia language code.
      namespace_aliases: localised namespace names (lower case) -> namespace number, used when a dump's
        `<siteinfo>` is absent; names from `<siteinfo>` are added on top.
      disambiguation_templates: lower-case template names whose presence marks a disambiguation page.
      disambiguation_title: regex searched in the title that marks a disambiguation page.
      list_title: regex searched in the title that marks a list page.
      dropped_sections: lower-case section headings whose whole section is dropped (references, links out).
      redirect_words: the localised `#REDIRECT` magic words (upper case), for dumps without `<redirect>`.
      link_trail: regex of letters that, written right after `]]`, join the link's anchor (`[[bus]]es`).
        Empty for languages without link trails.
      char_units: passages count characters instead of whitespace-separated words (no spaces in the script).
      units_per_passage: passage length in words (or characters when `char_units`).
    """

    code: str
    namespace_aliases: dict[str, int] = dataclasses.field(default_factory=dict)
    disambiguation_templates: frozenset[str] = frozenset({"disambiguation", "disambig", "dab"})
    disambiguation_title: str = r"\(disambiguation\)$"
    list_title: str = r"^(?:List|Lists|Index) of "
    dropped_sections: frozenset[str] = frozenset()
    redirect_words: tuple[str, ...] = ("#REDIRECT",)
    link_trail: str = r"[^\W\d_]+"
    char_units: bool = False
    units_per_passage: int = 100

    def is_disambiguation_title(self, title: str) -> bool:
        """Whether the title alone marks a disambiguation page."""
        return bool(self.disambiguation_title) and re.search(self.disambiguation_title, title) is not None

    def is_list_title(self, title: str) -> bool:
        """Whether the title marks a list page."""
        return bool(self.list_title) and re.search(self.list_title, title) is not None


def _ns(file_names: str, category_names: str, template_names: str) -> dict[str, int]:
    """Builds a namespace alias table from space-separated localised names (underscores stand for spaces)."""
    table: dict[str, int] = {}
    for names, number in ((file_names, _FILE), (category_names, _CATEGORY), (template_names, _TEMPLATE)):
        for name in names.split():
            table[name.replace("_", " ").lower()] = number
    return table


_ENGLISH_SECTIONS = frozenset({
    "references", "external links", "see also", "further reading", "notes", "bibliography", "sources",
    "footnotes", "citations", "notes and references", "references and notes", "general references",
})

PROFILES: dict[str, LanguageProfile] = {
    "en": LanguageProfile(
        code="en",
        disambiguation_templates=frozenset({
            "disambiguation", "disambig", "dab", "disamb", "hndis", "geodis", "hospital disambiguation",
            "mountainindex", "school disambiguation", "letter-number combination disambiguation",
            "place name disambiguation", "road disambiguation", "number disambiguation", "call sign disambiguation",
            "species latin name disambiguation", "disambiguation cleanup", "airport disambiguation",
            "chinese title disambiguation", "mathematical disambiguation", "mil-unit-dis", "genus disambiguation",
        }),
        list_title=r"^(?:List|Lists|Index|Timeline|Outline) of ",
        dropped_sections=_ENGLISH_SECTIONS,
        link_trail=r"[a-z]+",
    ),
    "de": LanguageProfile(
        code="de", namespace_aliases=_ns("Datei Bild", "Kategorie", "Vorlage"),
        disambiguation_templates=frozenset({"begriffsklärung", "disambiguation", "disambig"}),
        disambiguation_title=r"\(Begriffsklärung\)$", list_title=r"^Liste ",
        dropped_sections=frozenset({"einzelnachweise", "weblinks", "literatur", "siehe auch", "anmerkungen",
                                    "quellen", "belege", "fußnoten"}),
        redirect_words=("#REDIRECT", "#WEITERLEITUNG"), link_trail=r"[a-zäöüß]+",
    ),
    "es": LanguageProfile(
        code="es", namespace_aliases={**_ns("Archivo Imagen", "Categoría", "Plantilla"), "anexo": 104},
        disambiguation_templates=frozenset({"desambiguación", "desambiguacion", "des", "disambig",
                                            "disambiguation"}),
        disambiguation_title=r"\(desambiguación\)$", list_title=r"^(?:Anexo:|Lista de )",
        dropped_sections=frozenset({"referencias", "enlaces externos", "véase también", "bibliografía", "notas",
                                    "notas y referencias", "fuentes"}),
        redirect_words=("#REDIRECT", "#REDIRECCIÓN"), link_trail=r"[a-záéíóúñü]+",
    ),
    "fr": LanguageProfile(
        code="fr", namespace_aliases=_ns("Fichier Image", "Catégorie", "Modèle"),
        disambiguation_templates=frozenset({"homonymie", "bandeau homonymie", "disambig", "patronymie",
                                            "toponymie"}),
        disambiguation_title=r"\(homonymie\)$", list_title=r"^Liste (?:des |de |d'|du )",
        dropped_sections=frozenset({"références", "liens externes", "voir aussi", "notes et références",
                                    "bibliographie", "articles connexes", "notes"}),
        redirect_words=("#REDIRECT", "#REDIRECTION"), link_trail=r"[a-zàâçéèêîôûäëïöüùÇÉÂÊÎÔÛÄËÏÖÜÀÈÙ]+",
    ),
    "ja": LanguageProfile(
        code="ja", namespace_aliases=_ns("ファイル 画像", "カテゴリ", "テンプレート"),
        disambiguation_templates=frozenset({"aimai", "曖昧さ回避", "人名の曖昧さ回避", "地名の曖昧さ回避", "disambig",
                                            "打消し"}),
        disambiguation_title=r"\(曖昧さ回避\)$", list_title=r"一覧$",
        dropped_sections=frozenset({"脚注", "出典", "参考文献", "外部リンク", "関連項目", "注釈"}),
        redirect_words=("#REDIRECT", "#転送"), link_trail="", char_units=True, units_per_passage=150,
    ),
    "zh": LanguageProfile(
        code="zh", namespace_aliases=_ns("文件 檔案 图像 圖像", "分类 分類", "模板"),
        disambiguation_templates=frozenset({"disambig", "消歧义", "消歧義", "dab"}),
        disambiguation_title=r"\(消歧义\)$", list_title=r"列表$",
        dropped_sections=frozenset({"参考文献", "參考文獻", "外部链接", "外部連結", "参见", "參見", "注释", "注釋"}),
        redirect_words=("#REDIRECT", "#重定向"), link_trail="", char_units=True, units_per_passage=150,
    ),
    "ko": LanguageProfile(
        code="ko", namespace_aliases=_ns("파일 그림", "분류", "틀"),
        disambiguation_templates=frozenset({"동음이의", "동음이의어", "disambig", "disambiguation"}),
        disambiguation_title=r"\(동음이의\)$", list_title=r"목록$",
        dropped_sections=frozenset({"각주", "외부 링크", "같이 보기", "참고 문헌", "참고 자료"}),
        redirect_words=("#REDIRECT", "#넘겨주기"), link_trail="",
    ),
    "ru": LanguageProfile(
        code="ru", namespace_aliases=_ns("Файл Изображение", "Категория", "Шаблон"),
        disambiguation_templates=frozenset({"неоднозначность", "многозначность", "disambig", "значения"}),
        disambiguation_title=r"\(значения\)$", list_title=r"^Список ",
        dropped_sections=frozenset({"примечания", "ссылки", "литература", "см. также", "источники"}),
        redirect_words=("#REDIRECT", "#ПЕРЕНАПРАВЛЕНИЕ", "#ПЕРЕНАПР"), link_trail=r"[а-яё]+",
    ),
    "bg": LanguageProfile(
        code="bg", namespace_aliases=_ns("Файл Картинка", "Категория", "Шаблон"),
        disambiguation_templates=frozenset({"пояснение", "disambig", "многозначност"}),
        disambiguation_title=r"\(пояснение\)$", list_title=r"^Списък ",
        dropped_sections=frozenset({"бележки", "външни препратки", "източници", "вижте също", "литература"}),
        redirect_words=("#REDIRECT", "#ПРЕНАСОЧВАНЕ"), link_trail=r"[a-zабвгдежзийклмнопрстуфхцчшщъьюя]+",
    ),
    "ar": LanguageProfile(
        code="ar", namespace_aliases=_ns("ملف صورة", "تصنيف", "قالب"),
        disambiguation_templates=frozenset({"توضيح", "disambig", "disambiguation"}),
        disambiguation_title=r"\(توضيح\)$", list_title=r"^قائمة ",
        dropped_sections=frozenset({"مراجع", "المراجع", "وصلات خارجية", "انظر أيضا", "انظر أيضًا", "مصادر",
                                    "المصادر"}),
        redirect_words=("#REDIRECT", "#تحويل"), link_trail="",
    ),
    "af": LanguageProfile(
        code="af", namespace_aliases=_ns("Lêer Beeld", "Kategorie", "Sjabloon"),
        disambiguation_templates=frozenset({"dubbelsinnig", "disambig", "dp"}),
        disambiguation_title=r"\(dubbelsinnig\)$", list_title=r"^Lys van ",
        dropped_sections=frozenset({"verwysings", "eksterne skakels", "sien ook", "bronne", "notas"}),
        link_trail=r"[a-zêëéèôöûüîï]+",
    ),
    "fi": LanguageProfile(
        code="fi", namespace_aliases=_ns("Tiedosto Kuva", "Luokka", "Malline"),
        disambiguation_templates=frozenset({"täsmennyssivu", "disambig", "tämä"}),
        disambiguation_title=r"\(täsmennyssivu\)$", list_title=r"^Luettelo ",
        dropped_sections=frozenset({"lähteet", "aiheesta muualla", "katso myös", "kirjallisuutta", "viitteet"}),
        redirect_words=("#REDIRECT", "#OHJAUS", "#UUDELLEENOHJAUS"), link_trail=r"[a-zäö]+",
    ),
    "bn": LanguageProfile(
        code="bn", namespace_aliases=_ns("চিত্র", "বিষয়শ্রেণী", "টেমপ্লেট"),
        disambiguation_templates=frozenset({"দ্ব্যর্থতা নিরসন", "disambig", "disambiguation"}),
        disambiguation_title=r"\(দ্ব্যর্থতা নিরসন\)$", list_title=r"তালিকা$",
        dropped_sections=frozenset({"তথ্যসূত্র", "বহিঃসংযোগ", "আরও দেখুন"}),
        redirect_words=("#REDIRECT", "#পুনর্নির্দেশ"), link_trail="",
    ),
    "te": LanguageProfile(
        code="te", namespace_aliases=_ns("దస్త్రం బొమ్మ", "వర్గం", "మూస"),
        disambiguation_templates=frozenset({"అయోమయ నివృత్తి", "disambig", "disambiguation"}),
        disambiguation_title=r"\(అయోమయ నివృత్తి\)$", list_title=r"జాబితా$",
        dropped_sections=frozenset({"మూలాలు", "బయటి లింకులు", "ఇవి కూడా చూడండి"}),
        redirect_words=("#REDIRECT", "#దారిమార్పు"), link_trail="",
    ),
}


def profile_for(lang: str, overrides: Mapping[str, Any] | None = None) -> LanguageProfile:
    """The profile of a language; languages without one get English conventions.

    Args:
      lang: Wikipedia language code.
      overrides: field name -> value replacing the built-in setting (e.g. from a JSON file:
        {"disambiguation_templates": ["dab", "homonymie"], "list_title": "^Liste "}); names of templates and
        sections are compared in lower case.

    Returns:
      The language's profile.

    Raises:
      UserError: an override names no profile field or has the wrong type.
    """
    profile = PROFILES.get(lang) or LanguageProfile(code=lang, dropped_sections=_ENGLISH_SECTIONS)
    if not overrides:
        return profile
    fields = {field.name: field for field in dataclasses.fields(LanguageProfile)}
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in fields or name == "code":
            raise UserError(f"language profile: unknown setting {name!r} (known: {', '.join(sorted(fields))})")
        current = getattr(profile, name)
        try:
            if isinstance(current, frozenset):
                changes[name] = frozenset(str(item).lower() for item in value)
            elif isinstance(current, tuple):
                changes[name] = tuple(str(item) for item in value)
            elif isinstance(current, dict):
                changes[name] = {str(key).lower(): int(number) for key, number in dict(value).items()}
            elif isinstance(current, bool):
                changes[name] = bool(value)
            else:
                changes[name] = type(current)(value)
            if name in ("disambiguation_title", "list_title", "link_trail"):
                re.compile(changes[name])
        except (TypeError, ValueError, re.error) as e:
            raise UserError(f"language profile: {name}={value!r} is not valid: {e}") from None
    return dataclasses.replace(profile, **changes)
