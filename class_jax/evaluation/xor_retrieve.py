"""XOR-Retrieve R@2kt / R@5kt, as the official `eval_xor_retrieve.py` computes them, plus a corrected variant.

Official rule (reproduced exactly, quirks included):
  * The prediction records are walked in file order; each record's own `lang` picks its language bucket (not the
    gold's), and a record whose id is repeated is counted again.
  * A record whose gold answers are all "yes"/"no" is skipped; so is a record with an unknown id.
  * Its passages are tokenised with `nltk.word_tokenize` in rank order and the first 2,000 (5,000) tokens are
    joined with single spaces; the question is a hit when any non-yes/no gold answer is a raw, case-sensitive
    substring of that string (an answer "art" is found inside "start"; an answer with a comma or a quote, which
    the tokenizer splits off, can never be found: perfect retrieval tops out near 88 on the dev set).
  * Recall per language = hits / records x 100 over the *predicted* questions only (missing questions do not
    count), and the score is the unweighted mean over the languages that occur; with no scored record at all the
    official script fails (`statistics.mean([])`), reported here as None.

Corrected variant ("corrected_*", never a replacement of the official figure):
  * the denominator is every gold question with a non-yes/no answer (a missing prediction is a miss), the
    language is the gold one, and a repeated prediction id is scored once (its first record);
  * each gold answer is tokenised by the same tokenizer and must match whole tokens of the passage string, so
    tokenisation no longer caps recall and "art" no longer matches "start".
"""

import dataclasses
import functools
import multiprocessing
import statistics
from typing import Callable, Sequence

from class_jax.runtime.errors import UserError
from class_jax.evaluation import text
from class_jax.evaluation.records import Coverage, GoldQuestion, RetrievalPrediction, repeated_ids

# The official token budgets: R@2kt and R@5kt.
OFFICIAL_TOKEN_BUDGETS = (2000, 5000)

# Answers the official scorer ignores for retrieval (boolean questions have no span to retrieve).
BOOLEAN_ANSWERS = frozenset({"yes", "no"})

Tokenizer = Callable[[str], Sequence[str]]


@dataclasses.dataclass(frozen=True)
class LanguageRecall:
    """Hits among counted questions of one language."""
    count: int
    hits: int

    @property
    def recall(self) -> float:
        """Hit rate x 100, computed in the official order ((hits / count) * 100) so floats match to the last bit."""
        return self.hits / self.count * 100


@dataclasses.dataclass(frozen=True)
class RecallAtTokens:
    """R@kt for one token budget.

    Attributes:
        max_tokens: the budget (2000 for R@2kt).
        per_language: official per-language counts, in the order languages first occur in the predictions.
        macro: official unweighted mean of per-language recalls; None when no question was scored.
        corrected_per_language: corrected counts (gold languages, in gold order).
        corrected_macro: corrected mean over the gold languages; None when the gold has no span question.
    """
    max_tokens: int
    per_language: dict[str, LanguageRecall]
    macro: float | None
    corrected_per_language: dict[str, LanguageRecall]
    corrected_macro: float | None

    @property
    def name(self) -> str:
        """"R@2kt" for a budget of 2,000 tokens."""
        return f"R@{self.max_tokens // 1000}kt" if self.max_tokens % 1000 == 0 else f"R@{self.max_tokens}t"


@dataclasses.dataclass(frozen=True)
class XorRetrieveResult:
    """Scores for every budget, and how the predictions cover the gold questions."""
    budgets: tuple[RecallAtTokens, ...]
    coverage: Coverage

    def to_dict(self) -> dict:
        """Flat summary for the final JSON line."""
        summary: dict = {"metric": "xor_retrieve"}
        for budget in self.budgets:
            summary[budget.name] = budget.macro
            summary[f"{budget.name}_per_language"] = {k: v.recall for k, v in budget.per_language.items()}
        for budget in self.budgets:
            summary[f"corrected_{budget.name}"] = budget.corrected_macro
            summary[f"corrected_{budget.name}_per_language"] = {
                k: v.recall for k, v in budget.corrected_per_language.items()}
        summary["coverage"] = self.coverage.to_dict()
        return summary


def span_answers(answers: Sequence[str]) -> list[str]:
    """The gold answers the retrieval scorer looks for: all but the literal "yes" / "no"."""
    return [a for a in answers if a not in BOOLEAN_ANSWERS]


def leading_tokens(passages: Sequence[str], max_tokens: int, tokenize: Tokenizer) -> list[str]:
    """Tokenises passages in rank order until `max_tokens` tokens are collected, and returns exactly those.

    The first N tokens are the same whatever larger budget is asked for, so one call serves every budget.

    Args:
        passages: passage texts in rank order.
        max_tokens: how many leading tokens are needed.
        tokenize: the word tokenizer.

    Returns:
        At most `max_tokens` tokens.
    """
    tokens: list[str] = []
    for passage in passages:
        tokens += tokenize(passage)
        if len(tokens) >= max_tokens:
            break
    return tokens[:max_tokens]


def official_hit(answers: Sequence[str], token_string: str) -> bool:
    """The official test: some answer is a raw substring of the space-joined tokens (an empty answer always is)."""
    return any(answer in token_string for answer in answers)


def corrected_hit(tokenized_answers: Sequence[str], token_string: str) -> bool:
    """Corrected test: some tokenised, non-empty answer occurs as whole tokens of the space-joined tokens."""
    padded = f" {token_string} "
    return any(answer and f" {answer} " in padded for answer in tokenized_answers)


def passage_token_prefixes(passage_lists: Sequence[Sequence[str]], max_tokens: int, tokenize: Tokenizer, *,
                           workers: int = 1, progress: bool = False) -> list[list[str]]:
    """`leading_tokens` for many questions, optionally in worker processes (tokenising is the slow part).

    Args:
        passage_lists: each question's passages in rank order.
        max_tokens: how many leading tokens are needed.
        tokenize: the word tokenizer (a module-level function when workers > 1, so it can be sent to them).
        workers: processes to use; 1 tokenises here.
        progress: show a progress bar on stderr.

    Returns:
        The leading tokens of each question, in order.
    """
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    prefix = functools.partial(leading_tokens, max_tokens=max_tokens, tokenize=tokenize)
    bar = functools.partial(tqdm, total=len(passage_lists), disable=not progress, desc="tokenising passages",
                            unit="question")
    if workers <= 1 or len(passage_lists) < 2:
        return list(bar(map(prefix, passage_lists)))
    tokenize("")  # settle the Punkt lookup (and its one-time warning) here, not once per worker
    # "spawn": forking a process that may run JAX / TensorFlow threads is unsafe.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return list(bar(pool.imap(prefix, passage_lists, chunksize=8)))


def score_xor_retrieve(gold: Sequence[GoldQuestion], predictions: Sequence[RetrievalPrediction], *,
                       token_budgets: Sequence[int] = OFFICIAL_TOKEN_BUDGETS, tokenize: Tokenizer | None = None,
                       allow_unknown_ids: bool = False, gold_source: str = "gold data",
                       prediction_source: str = "predictions", workers: int = 1,
                       progress: bool = False) -> XorRetrieveResult:
    """Computes R@kt for each budget, official and corrected.

    Args:
        gold: gold questions with English span answers (a repeated id keeps its last record, as officially).
        predictions: retrieval records in file order.
        token_budgets: token budgets, by default (2000, 5000).
        tokenize: word tokenizer; by default `nltk.word_tokenize` (see `text.official_word_tokenize`).
        allow_unknown_ids: skip (and count) prediction ids absent from the gold instead of failing.
        gold_source: name of the gold data in messages.
        prediction_source: name of the predictions in messages.
        workers: processes that tokenise passages (results do not depend on it).
        progress: show a progress bar while tokenising.

    Returns:
        The scores and the coverage report.

    Raises:
        UserError: for a prediction with an unknown id (unless allowed) or a language absent from the gold data.
    """
    tokenize = tokenize or text.official_word_tokenize
    budgets = tuple(sorted(set(token_budgets)))
    if not budgets or budgets[0] <= 0:
        raise UserError(f"token budgets must be positive, got {list(token_budgets)}")
    gold_by_id = {q.id: q for q in gold}
    gold_languages = {q.lang for q in gold}

    # Check every record before the slow tokenisation, so a bad file fails at once.
    unknown_ids = []
    for prediction in predictions:
        if prediction.lang not in gold_languages:
            raise UserError(f"{prediction_source}: record {prediction.index} (id {prediction.id!r}): language "
                            f"{prediction.lang!r} does not occur in {gold_source} ({sorted(gold_languages)})")
        if prediction.id not in gold_by_id:
            if not allow_unknown_ids:
                raise UserError(f"{prediction_source}: record {prediction.index}: id {prediction.id!r} is not in "
                                f"{gold_source}")
            unknown_ids.append(prediction.id)
    scorable = [i for i, p in enumerate(predictions)
                if p.id in gold_by_id and span_answers(gold_by_id[p.id].answers)]
    prefixes = dict(zip(scorable, passage_token_prefixes([predictions[i].passages for i in scorable], budgets[-1],
                                                         tokenize, workers=workers, progress=progress)))

    official = {budget: {} for budget in budgets}  # budget -> lang -> [count, hits]
    corrected_hits = {budget: set() for budget in budgets}  # budget -> gold ids hit (first record only)
    scored_ids: set[str] = set()
    duplicate_ids = []
    language_mismatches = 0
    tokenized_answers: dict[str, str] = {}
    for position, prediction in enumerate(predictions):
        for buckets in official.values():
            buckets.setdefault(prediction.lang, [0, 0])  # the official script registers the language first
        question = gold_by_id.get(prediction.id)
        if question is None:
            continue
        first_record = prediction.id not in scored_ids
        if not first_record:
            duplicate_ids.append(prediction.id)
        scored_ids.add(prediction.id)
        language_mismatches += prediction.lang != question.lang
        answers = span_answers(question.answers)
        if not answers:
            continue
        tokens = prefixes[position]
        for answer in answers:
            if answer not in tokenized_answers:
                tokenized_answers[answer] = " ".join(tokenize(answer))
        for budget in budgets:
            token_string = " ".join(tokens[:budget])
            counts = official[budget][prediction.lang]
            counts[0] += 1
            counts[1] += official_hit(answers, token_string)
            if first_record and corrected_hit([tokenized_answers[a] for a in answers], token_string):
                corrected_hits[budget].add(question.id)

    span_questions = [q for q in gold_by_id.values() if span_answers(q.answers)]
    results = []
    for budget in budgets:
        per_language = {lang: LanguageRecall(count, hits) for lang, (count, hits) in official[budget].items()
                        if count > 0}
        corrected: dict[str, list[int]] = {}
        for question in span_questions:
            counts = corrected.setdefault(question.lang, [0, 0])
            counts[0] += 1
            counts[1] += question.id in corrected_hits[budget]
        corrected_per_language = {lang: LanguageRecall(c, h) for lang, (c, h) in corrected.items()}
        results.append(RecallAtTokens(
            max_tokens=budget,
            per_language=per_language,
            macro=statistics.mean(r.recall for r in per_language.values()) if per_language else None,
            corrected_per_language=corrected_per_language,
            corrected_macro=(statistics.mean(r.recall for r in corrected_per_language.values())
                             if corrected_per_language else None)))
    coverage = Coverage(
        gold_questions=len(gold), prediction_records=len(predictions), matched=len(scored_ids),
        missing_ids=tuple(i for i in gold_by_id if i not in scored_ids), duplicate_ids=tuple(duplicate_ids),
        unknown_ids=tuple(unknown_ids), duplicate_gold_ids=repeated_ids(q.id for q in gold),
        notes={"language_mismatches": language_mismatches})
    return XorRetrieveResult(budgets=tuple(results), coverage=coverage)


def format_official_report(result: XorRetrieveResult) -> list[str]:
    """The lines the official script prints, in its order and wording (scores unrounded)."""
    lines = []
    for budget in result.budgets:
        lines.append(f"Evaluating {budget.name}")
        for lang, recall in budget.per_language.items():
            lines.append(f"performance on {lang} ({recall.count} examples)")
            lines.append(str(recall.recall))
        lines.append("Final macro averaged score: ")
        lines.append(str(budget.macro) if budget.macro is not None
                     else "n/a (no prediction could be scored; the official script fails here)")
    return lines


def format_corrected_report(result: XorRetrieveResult) -> list[str]:
    """The corrected figures, clearly labelled as not official."""
    lines = ["Corrected variant (not official: every gold question counts, gold language, answers tokenised "
             "and matched as whole tokens):"]
    for budget in result.budgets:
        per_language = ", ".join(f"{lang} {r.recall:.2f} ({r.count})"
                                 for lang, r in budget.corrected_per_language.items())
        macro = "n/a" if budget.corrected_macro is None else f"{budget.corrected_macro:.2f}"
        lines.append(f"corrected {budget.name}: {macro}  [{per_language}]")
    return lines
