"""Rule-based cloze-to-question rewriting for offline use (no LLM).

Each language has an ordered list of rules. A rule matches the mask together with the words that tell what kind
of question it is (a preposition before it, a case suffix or particle after it, a year word) and replaces that
phrase with a wh-phrase chosen by the kind of answer (year, date, number, entity). Then the sentence end is turned
into a question: "?" (with "¿" in Spanish, " ?" in French), "か？" in Japanese, an interrogative ending in Korean.

Languages with free word order (fi, ru, ar) move the wh-phrase to the front; the others keep it in place, which
is the normal question form in ja, zh, ko and the Indian languages and an acceptable echo question in English,
German and the Romance languages ("Paris is the capital of what?"). Subjects at the start of a sentence become
ordinary questions everywhere ("What is the capital of France?").
"""

import dataclasses
import re
from typing import Callable, Sequence

from class_jax.mining import mlqa_pt
from class_jax.mining.rewrite import rewriter as rewrite

_YEAR = re.compile(r"^\d{3,4}\s*(?:年|년|г\.?|год)?$")


def template_answer_kind(answer: str) -> str:
    """"year", "date", "number" or "entity": the kind of answer that selects a wh-word."""
    kind = mlqa_pt.answer_kind(answer)
    if kind == "date" and _YEAR.match(answer.strip()):
        return "year"
    return kind


@dataclasses.dataclass(frozen=True)
class _Rule:
    """Replace `pattern` (which contains MASK) by the wh-phrase of the answer's kind ('*' = any kind)."""

    pattern: str
    wh: dict[str, str]
    front: bool = False

    def wh_for(self, kind: str) -> str | None:
        if kind in self.wh:
            return self.wh[kind]
        if kind == "year" and "date" in self.wh:
            return self.wh["date"]
        return self.wh.get("*")


def _rules(*specs: tuple) -> tuple[_Rule, ...]:
    return tuple(_Rule(*spec) for spec in specs)


_ANY = "*"
_RULES: dict[str, tuple[_Rule, ...]] = {
    "en": _rules(
        (r"\b[Ii]n the year MASK", {"year": "in what year"}),
        (r"\b[Ii]n MASK", {"year": "in what year", "date": "when", "entity": "where"}),
        (r"\b[Oo]n MASK", {"date": "on what date"}),
        (r"\bfrom MASK", {"entity": "from where"}),
        (r"\bby MASK", {"entity": "by whom"}),
        (r"^MASK(?= (?:wrote|founded|directed|composed|painted|discovered|invented|designed|married|"
         r"played|won|led|ruled|created|established|starred))", {"entity": "Who"}),
        (r"^MASK", {"year": "What year", "date": "What date", "number": "What number", _ANY: "What"}),
        (r"\b(?:the|a|an) MASK", {"entity": "what"}),
        (r"MASK", {"year": "what year", "date": "when", "number": "how many", _ANY: "what"}),
    ),
    "de": _rules(
        (r"\b[Ii]m [Jj]ahr(?:e)? MASK", {"year": "in welchem Jahr"}),
        (r"\b(?:[Aa]m|[Ss]eit dem) MASK", {"date": "wann"}),
        (r"\b[Ii]n (?:die|den|das) MASK", {"entity": "wohin"}),
        (r"\b[Ii]n (?:der|dem) MASK", {"entity": "wo"}),
        (r"\b[Ii]n MASK", {"year": "in welchem Jahr", "date": "wann", "entity": "wo"}),
        (r"\b(?:[Aa]us|[Vv]om) MASK", {"entity": "woher"}),
        (r"\b[Nn]ach MASK", {"entity": "wohin"}),
        (r"\b[Vv]on MASK", {"entity": "von wem"}),
        (r"^MASK", {"year": "Wann", _ANY: "Was"}),
        (r"\b(?:der|die|das|den|dem|des) MASK", {"entity": "was"}),
        (r"MASK", {"year": "wann", "date": "wann", "number": "wie viele", _ANY: "was"}),
    ),
    "es": _rules(
        (r"\b[Ee]n el año MASK", {"year": "en qué año"}),
        (r"\b[Ee]n MASK", {"year": "en qué año", "date": "cuándo", "entity": "dónde"}),
        (r"\b[Dd]esde MASK", {"entity": "desde dónde", "year": "desde qué año"}),
        (r"\b[Pp]or MASK", {"entity": "por quién"}),
        (r"\b(?:el|la|los|las) MASK", {"entity": "qué"}),
        (r"^MASK", {"year": "Qué año", _ANY: "Qué"}),
        (r"MASK", {"year": "qué año", "date": "cuándo", "number": "cuántos", _ANY: "qué"}),
    ),
    "fr": _rules(
        (r"\b[Ee]n MASK", {"year": "en quelle année", "date": "quand", "entity": "où"}),
        (r"\b[Ll]e MASK", {"date": "quand"}),
        (r"\b[Àà] MASK", {"entity": "où"}),
        (r"\b[Pp]ar MASK", {"entity": "par qui"}),
        (r"\b(?:le|la|les) MASK|\bl'MASK", {"entity": "quoi"}),
        (r"^MASK", {"year": "Quelle année", _ANY: "Qu'est-ce qui"}),
        (r"MASK", {"year": "quelle année", "date": "quand", "number": "combien de", _ANY: "quoi"}),
    ),
    "it": _rules(
        (r"\b[Nn]el(?:l')? MASK", {"year": "in quale anno", "date": "quando", "entity": "dove"}),
        (r"\b(?:[Ii]n|[Aa]) MASK", {"entity": "dove"}),
        (r"\b[Dd]a MASK", {"entity": "da chi"}),
        (r"\b(?:il|lo|la|i|gli|le) MASK|\bl'MASK", {"entity": "che cosa"}),
        (r"^MASK", {"year": "Quale anno", _ANY: "Che cosa"}),
        (r"MASK", {"year": "quale anno", "date": "quando", "number": "quanti", _ANY: "che cosa"}),
    ),
    "fi": _rules(
        (r"\b[Vv]uonna MASK", {"year": "minä vuonna", "date": "milloin"}, True),
        (r"MASK", {"year": "minä vuonna", "date": "milloin", "number": "kuinka monta"}, True),
        # The entity wh-word follows the answer's case ending; see _finnish_entity_wh.
        (r"MASK", {"entity": "mikä"}, True),
    ),
    "ru": _rules(
        (r"\b[Вв]о? MASK году", {"year": "в каком году"}, True),
        # Only when the mask is the whole noun phrase: "в _X_ море" needs agreement rules we do not have.
        (r"\b[Вв]о? MASK(?=\s*[.,;:!?]|$)", {"year": "в каком году", "date": "когда", "entity": "где"}, True),
        (r"\b[Нн]а MASK", {"entity": "где"}, True),
        (r"\b(?:[Ии]з|[Сс]о?) MASK", {"entity": "откуда"}, True),
        (r"^MASK\s+[—–-]\s+", {"entity": "Как называется "}),
        (r"MASK", {"year": "в каком году", "date": "когда", "number": "сколько", _ANY: "что"}, True),
    ),
    "ar": _rules(
        (r"(?:في )?(?:عام|سنة) MASK", {"year": "في أي عام", _ANY: "متى"}, True),
        (r"(?:في |ب)MASK", {"year": "في أي عام", "date": "متى", "entity": "أين"}, True),
        (r"من MASK", {"entity": "من أين"}, True),
        (r"^MASK", {"year": "ما العام الذي", _ANY: "ما"}),
        (r"MASK", {"year": "متى", "date": "متى", "number": "كم", _ANY: "ماذا"}, True),
    ),
    "ja": _rules(
        (r"MASK(?=によって|により)", {"entity": "誰"}),
        (r"MASK[はが]", {"year": "何年が", "date": "いつが", _ANY: "何が"}),
        (r"MASK(?=に)", {"year": "何年", "date": "いつ", "number": "いくつ", "entity": "どこ"}),
        (r"MASK(?=[でへ]|から)", {"entity": "どこ"}),
        (r"MASK", {"year": "何年", "date": "いつ", "number": "いくつ", _ANY: "何"}),
    ),
    "zh": _rules(
        (r"(?<=(?:者|人|演|统|席|相|长)是)MASK", {"entity": "谁"}),
        (r"(?:于|在|位于|到|至)MASK", {"year": "于哪一年", "date": "于什么时候", "entity": "在哪里"}),
        (r"MASK年", {"number": "哪一年"}),
        (r"MASK", {"year": "哪一年", "date": "什么时候", "number": "多少", _ANY: "什么"}),
    ),
    "ko": _rules(
        (r"MASK(?:에|에는)(?=\s)", {"year": "몇 년에", "date": "언제", "entity": "어디에"}),
        (r"MASK에서", {_ANY: "어디에서"}),
        (r"MASK(?:으로|로)(?=\s)", {_ANY: "어디로"}),
        (r"MASK(?:은|는|이|가)(?=\s)", {"year": "몇 년이", "date": "언제가", _ANY: "무엇이"}),
        (r"MASK(?:을|를)(?=\s)", {_ANY: "무엇을"}),
        (r"MASK(?:와|과)(?=\s)", {_ANY: "무엇과"}),
        (r"MASK의", {_ANY: "어느 것의"}),
        (r"MASK", {"year": "몇 년", "date": "언제", "number": "몇", _ANY: "무엇"}),
    ),
    "bn": _rules(
        (r"(?<=েন )MASK(?=\s*।|$)", {"entity": "কে"}),  # After an honorific verb: a person.
        (r"MASK(?=\s+(?:শহর|জেলা|দেশ|নদী))", {"entity": "কোন"}),  # "_X_ city": which city.
        (r"MASK(?=\s+থেকে)", {"entity": "কোথা"}),
        (r"MASK\s*সালে", {_ANY: "কোন সালে"}),
        (r"MASK(?:\u09df|\u09af\u09bc|তে|এ)(?=\s|।|$)", {"year": "কোন সালে", "date": "কবে", "entity": "কোথা\u09df"}),
        (r"MASK(?:ের|র)(?=\s)", {_ANY: "কিসের"}),
        (r"MASK", {"year": "কোন সালে", "date": "কবে", "number": "কত", _ANY: "কী"}),
    ),
    "te": _rules(
        (r"MASK(?=\s+\S*ారు(?:\s|\.|$))", {"entity": "ఎవరు"}),  # Honorific plural verb: a person did it.
        (r"MASK(?=\s+(?:నగర|జిల్లా|దేశ|నది))", {"entity": "ఏ"}),
        (r"MASK\s*(?:లో|లోని)(?=\s|$|\.)", {"year": "ఏ సంవత్సరంలో", "date": "ఎప్పుడు", "entity": "ఎక్కడ"}),
        (r"MASK", {"year": "ఏ సంవత్సరంలో", "date": "ఎప్పుడు", "number": "ఎన్ని", _ANY: "ఏది"}),
    ),
    "ta": _rules(
        (r"(?<=வர் )MASK", {"entity": "யார்"}),  # "எழுதியவர் _X_": the one who wrote is _X_.
        (r"MASK(?=\s+(?:நகர|மாவட்ட|நாட்|ஆற்))", {"entity": "எந்த"}),
        (r"MASK\s*(?:ஆம் ஆண்டு|ஆண்டு|ஆம் ஆண்டில்)", {_ANY: "எந்த ஆண்டு"}),
        (r"MASK\s*(?:இல்|வில்|யில்|இலுள்ள)(?=\s|$|\.)", {"entity": "எங்கே", "date": "எப்போது"}),
        (r"MASK", {"year": "எந்த ஆண்டு", "date": "எப்போது", "number": "எத்தனை", _ANY: "எது"}),
    ),
    "ml": _rules(
        (r"MASK\s*ആണ്", {"entity": "എന്താണ്"}),
        (r"MASK(?=\s+(?:നഗര|ജില്ല|രാജ്യ|നദി))", {"entity": "ഏത്"}),
        (r"MASK\s*(?:ൽ|ഇൽ|യിൽ|ിൽ)(?=\s|$|\.)", {"year": "ഏത് വർഷം", "date": "എപ്പോൾ", "entity": "എവിടെ"}),
        (r"MASK", {"year": "ഏത് വർഷം", "date": "എപ്പോൾ", "number": "എത്ര", _ANY: "എന്ത്"}),
    ),
    "kn": _rules(
        (r"MASK(?=\s+\S*ರು(?:\s|\.|$))", {"entity": "ಯಾರು"}),  # Honorific plural verb: a person did it.
        (r"MASK(?=\s+(?:ನಗರ|ಜಿಲ್ಲೆ|ದೇಶ|ನದಿ))", {"entity": "ಯಾವ"}),
        (r"MASK\s*(?:ರಲ್ಲಿ|ದಲ್ಲಿ|ಯಲ್ಲಿ|ನಲ್ಲಿ|ಲ್ಲಿ)(?=\s|$|\.)",
         {"year": "ಯಾವ ವರ್ಷದಲ್ಲಿ", "date": "ಯಾವಾಗ", "entity": "ಎಲ್ಲಿ"}),
        (r"MASK", {"year": "ಯಾವ ವರ್ಷ", "date": "ಯಾವಾಗ", "number": "ಎಷ್ಟು", _ANY: "ಏನು"}),
    ),
}

# Finnish case endings of the answer as written in the sentence -> the matching interrogative.
_FINNISH_CASE_WH = (
    ("ssa", "missä"), ("ssä", "missä"), ("sta", "mistä"), ("stä", "mistä"), ("lla", "missä"), ("llä", "missä"),
    ("lta", "mistä"), ("ltä", "mistä"), ("lle", "mihin"), ("ksi", "miksi"), ("seen", "mihin"),
    ("aan", "mihin"), ("een", "mihin"), ("iin", "mihin"), ("oon", "mihin"), ("uun", "mihin"), ("yyn", "mihin"),
    ("ään", "mihin"), ("öön", "mihin"), ("n", "minkä"),
)
# Sentence-initial words that are not names, lower-cased when a fronted wh-phrase moves in before them.
_LOWER_AFTER_FRONTING = {
    "fi": {"hän", "he", "se", "ne", "tämä", "nämä", "kaupunki", "joki", "yhtye", "elokuva", "kirja"},
    "ru": {"он", "она", "оно", "они", "это", "город", "река", "фильм", "роман", "группа", "книга"},
    "ar": set(),
}
_FINAL_TERMINATORS = ".。．!！?？؟।॥…;:"


def _finnish_entity_wh(answer: str) -> str:
    lowered = answer.strip().lower()
    for suffix, wh in _FINNISH_CASE_WH:
        if lowered.endswith(suffix) and len(lowered) > len(suffix) + 2:
            return wh
    return "mikä"


def _korean_interrogative(text: str) -> str:
    """Turns a plain declarative ending (-다) into the interrogative -는가 / -인가."""
    if text.endswith("이다"):
        return text[:-2] + "인가"
    if not text.endswith("다") or len(text) < 2:
        return text + "인가"
    stem_last = text[-2]
    code = ord(stem_last) - 0xAC00
    if 0 <= code < 11172 and code % 28 == 4:  # The syllable ends in ㄴ: 한다 -> 하는가, 된다 -> 되는가.
        return text[:-2] + chr(ord(stem_last) - 4) + "는가"
    return text[:-1] + "는가"


def _japanese_interrogative(text: str) -> str:
    if text.endswith("だ"):
        return text[:-1] + "か"
    return text if text.endswith("か") else text + "か"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _finish(lang: str, body: str) -> str:
    body = body.rstrip().rstrip(_FINAL_TERMINATORS).rstrip()
    if lang == "ja":
        return _japanese_interrogative(body) + "？"
    if lang == "zh":
        return body + "？"
    if lang == "ko":
        return _korean_interrogative(body) + "?"
    if lang == "ar":
        return body + "؟"
    if lang == "es":
        return "¿" + _capitalize(body) + "?"
    if lang == "fr":
        return _capitalize(body) + " ?"
    if lang in ("en", "de", "it", "fi", "ru"):
        return _capitalize(body) + "?"
    return body + "?"


def _tidy(text: str) -> str:
    """Collapses the double spaces and space-before-punctuation that removing a phrase leaves behind."""
    text = re.sub(r"\s{2,}", " ", text).strip()
    return re.sub(r"\s+([,.;:!?，。、])", r"\1", text)


def _front(lang: str, wh: str, rest: str) -> str:
    rest = _tidy(rest).lstrip(",، ")
    first, _, tail = rest.partition(" ")
    if first.lower() in _LOWER_AFTER_FRONTING.get(lang, set()):
        rest = first.lower() + (" " + tail if tail else "")
    return _capitalize(wh) + " " + rest


def template_question(lang: str, cloze: str, answer: str, mask_token: str) -> str | None:
    """Rewrites one cloze into a question by rule; None when the language has no rules or the mask is missing.

    Args:
      lang: language code.
      cloze: sentence containing `mask_token` once.
      answer: the masked answer (its form selects the wh-word).
      mask_token: the mask in `cloze`.

    Returns:
      The question, or None.
    """
    rules = _RULES.get(lang)
    if rules is None or cloze.count(mask_token) != 1:
        return None
    kind = template_answer_kind(answer)
    for rule in rules:
        wh = rule.wh_for(kind)
        if lang == "fi" and kind == "entity" and wh == "mikä":
            wh = _finnish_entity_wh(answer)
        if wh is None:
            continue
        match = re.search(rule.pattern.replace("MASK", re.escape(mask_token)), cloze)
        if match is None:
            continue
        if rule.front:
            body = _front(lang, wh, cloze[:match.start()] + " " + cloze[match.end():])
        else:
            body = _tidy(cloze[:match.start()] + wh + cloze[match.end():])
        return _finish(lang, body)
    return None


class TemplateRewriter(rewrite.Rewriter):
    """Offline rewriter with hand-written per-language rules; fails with "unsupported_language" elsewhere."""

    def __init__(self, mask_token: str = mlqa_pt.RELEASED_MASK_TOKEN):
        self.mask_token = mask_token

    @staticmethod
    def supported_languages() -> tuple[str, ...]:
        return tuple(sorted(_RULES))

    def config(self) -> dict:
        return {"kind": "template", "mask_token": self.mask_token, "languages": list(self.supported_languages())}

    def rewrite(self, requests: Sequence[rewrite.RewriteRequest],
                on_result: Callable[[int, rewrite.RewriteResult], None] | None = None) -> list[rewrite.RewriteResult]:
        results = []
        for index, request in enumerate(requests):
            if request.lang not in _RULES:
                result = rewrite.RewriteResult(None, "unsupported_language")
            else:
                question = template_question(request.lang, request.cloze, request.answer, self.mask_token)
                result = rewrite.RewriteResult(question, None if question else "no_rule_matched")
            if on_result is not None:
                on_result(index, result)
            results.append(result)
        return results
