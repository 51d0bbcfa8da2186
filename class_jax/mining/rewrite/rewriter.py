"""Cloze-to-question rewriting for MLQA-PT: the `Rewriter` interface and the resumable pipeline.

Stage 2 in the method: docs/method.md#stage-2-mlqa-pt.

Implementations: `rewrite_http.OpenAIChatRewriter` (any OpenAI-compatible server), `rewrite_local.
TransformersRewriter` (a local Hugging Face model), `rewrite_templates.TemplateRewriter` (rules, offline).

`rewrite_records` streams cloze records through a rewriter in batches, serves repeats from a `RewriteCache`,
filters the rewrites (rewrite_filters.py) and counts every record's outcome in a `RewriteReport`. A failing call
(HTTP error, garbage reply) costs one record, counted by reason, never the run.
"""

import abc
import collections
import dataclasses
import itertools
import logging
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from class_jax.mining.rewrite import cache as rewrite_cache
from class_jax.mining.rewrite import filters as rewrite_filters
from class_jax.runtime.errors import UserError

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("qid", "lang", "cloze", "answer")


@dataclasses.dataclass(frozen=True)
class RewriteRequest:
    """One cloze to rewrite.

    Attributes:
      lang: language of the cloze and of the wanted question.
      cloze: the sentence with the answer masked.
      answer: the masked answer.
    """

    lang: str
    cloze: str
    answer: str


@dataclasses.dataclass(frozen=True)
class RewriteResult:
    """The outcome of one rewrite: a question, or the reason there is none.

    Attributes:
      question: the rewritten question, or None on failure.
      failure: why there is no question ("http_503", "invalid_json", "empty_text", ...), None on success.
    """

    question: str | None
    failure: str | None = None


ResultCallback = Callable[[int, RewriteResult], None]


class Rewriter(abc.ABC):
    """Turns cloze queries into natural questions in the same language."""

    @abc.abstractmethod
    def config(self) -> dict:
        """The settings that determine the output (JSON-serialisable, never secrets); part of the cache key."""

    def prompt(self, request: RewriteRequest) -> Any:
        """The exact prompt this rewriter would send for `request` (JSON-serialisable), or None."""
        del request
        return None

    @abc.abstractmethod
    def rewrite(self, requests: Sequence[RewriteRequest],
                on_result: ResultCallback | None = None) -> list[RewriteResult]:
        """Rewrites a batch.

        Args:
          requests: the clozes.
          on_result: called as `on_result(index, result)` as soon as each result is known (possibly from worker
            threads), so callers can persist results before the whole batch is done.

        Returns:
          One result per request, in order. Failures are results with a reason, never exceptions.
        """

    def stats(self) -> dict:
        """Counters about the work done (calls, retries, ...); empty by default."""
        return {}

    def close(self) -> None:
        """Releases connections, models or threads."""


class RewriteReport:
    """Counts of what happened to every record passed through `rewrite_records`."""

    def __init__(self):
        self.records = 0
        self.from_cache = 0
        self.rewritten = 0
        self.kept = 0
        self.failed: collections.Counter[str] = collections.Counter()
        self.filtered: collections.Counter[str] = collections.Counter()

    def as_dict(self, rewriter: Rewriter | None = None) -> dict:
        """A plain summary: totals, {"failed": {reason: n}}, {"filtered": {reason: n}}, and rewriter stats."""
        summary = {"records": self.records, "from_cache": self.from_cache, "rewritten": self.rewritten,
                   "kept": self.kept, "failed": dict(sorted(self.failed.items())),
                   "filtered": dict(sorted(self.filtered.items()))}
        if rewriter is not None:
            summary["rewriter"] = rewriter.stats()
        return summary


def masked_answer(record: Mapping) -> str:
    """What the cloze masks: `target_answer` in English-answer records (whose `answer` is English), else `answer`."""
    return record["target_answer"] if "target_answer" in record else record["answer"]


def _validated(record: Mapping, number: int) -> RewriteRequest:
    fields = REQUIRED_FIELDS + (("target_answer",) if "target_answer" in record else ())
    for field in fields:
        if not isinstance(record.get(field), str):
            raise UserError(f"cloze record {number} (qid={record.get('qid')!r}): field '{field}' is missing or "
                            f"not a string")
    # The rewriter sees the anchor it masks, never the English answer: the same cloze gives the same request (and
    # cache key) in both answer modes, and an LLM is not tempted to write the English name into the question.
    return RewriteRequest(lang=record["lang"], cloze=record["cloze"], answer=masked_answer(record))


def _rewrite_pending(rewriter: Rewriter, pending: list[tuple[int, RewriteRequest, str]],
                     cache: rewrite_cache.RewriteCache | None) -> dict[int, RewriteResult]:
    """Runs the cache misses of one batch, storing each success in the cache as soon as it arrives."""
    if not pending:
        return {}

    def store(index: int, result: RewriteResult) -> None:
        if cache is not None and result.question is not None:
            cache.put(pending[index][2], result.question)

    requests = [request for _, request, _ in pending]
    try:
        results = rewriter.rewrite(requests, on_result=store)
    except Exception:  # pylint: disable=broad-except
        # A bug or crash inside a rewriter costs this batch, counted, not the run; the traceback is logged.
        logger.exception("rewriter raised on a batch of %d; counted as failures", len(requests))
        results = [RewriteResult(None, "rewriter_error")] * len(requests)
    if len(results) != len(requests):
        logger.error("rewriter returned %d results for %d requests", len(results), len(requests))
        results = [RewriteResult(None, "rewriter_error")] * len(requests)
    return {position: result for (position, _, _), result in zip(pending, results)}


def rewrite_records(records: Iterable[Mapping], rewriter: Rewriter, *,
                    cache: rewrite_cache.RewriteCache | None = None,
                    filter_config: rewrite_filters.RewriteFilterConfig | None = None,
                    report: RewriteReport | None = None, batch_size: int = 64,
                    keep_rejected: bool = False) -> Iterator[dict]:
    """Rewrites cloze records into questions, streaming, resumable through `cache`.

    Args:
      records: dicts with at least `qid`, `lang`, `cloze`, `answer` (e.g. `AnchorCloze.to_dict()`); an
        `answer_title` field, when present, is also kept out of the question. English-answer records also carry
        `target_answer` (the masked anchor): the rewriter is asked about it and the leak filter checks it, the
        title and the English `answer` (filters.rejection_reason).
      rewriter: does the rewriting.
      cache: finished rewrites from earlier runs; new successes are appended as they arrive.
      filter_config: checks on the rewrites (defaults: `RewriteFilterConfig()`).
      report: receives the counts (pass one in to read it after the generator is exhausted).
      batch_size: records per call to `rewriter.rewrite` (the HTTP rewriter runs a batch concurrently).
      keep_rejected: also yield failed and filtered records, with `question` None or the rejected text.

    Yields:
      Input records extended with `question` (and `rewrite_status`: "ok", "failed/<why>" or "filtered/<why>",
      when `keep_rejected`), in input order.

    Raises:
      UserError: a record lacks one of the required fields.
    """
    filter_config = filter_config or rewrite_filters.RewriteFilterConfig()
    report = report if report is not None else RewriteReport()
    config = rewriter.config()
    numbered = enumerate(records, start=1)
    while batch := list(itertools.islice(numbered, batch_size)):
        questions: dict[int, RewriteResult] = {}
        pending = []
        for position, (number, record) in enumerate(batch):
            request = _validated(record, number)
            key = rewrite_cache.cache_key(config, rewriter.prompt(request), request.lang, request.cloze,
                                          request.answer)
            cached = cache.get(key) if cache is not None else None
            if cached is not None:
                report.from_cache += 1
                questions[position] = RewriteResult(cached)
            else:
                pending.append((position, request, key))
        questions.update(_rewrite_pending(rewriter, pending, cache))
        report.rewritten += sum(1 for position, _, _ in pending if questions[position].question is not None)
        for position, (_, record) in enumerate(batch):
            report.records += 1
            result = questions[position]
            question = result.question
            if question is None:
                report.failed[result.failure or "unknown"] += 1
                status = f"failed/{result.failure}"
            else:
                english = record["answer"] if "target_answer" in record else None
                reason = rewrite_filters.rejection_reason(question, record["lang"], masked_answer(record),
                                                          record.get("answer_title"), filter_config,
                                                          english_answer=english)
                if reason:
                    report.filtered[reason] += 1
                    status = f"filtered/{reason}"
                else:
                    report.kept += 1
                    status = "ok"
            if status == "ok" or keep_rejected:
                output = dict(record, question=question)
                if keep_rejected:
                    output["rewrite_status"] = status
                yield output
