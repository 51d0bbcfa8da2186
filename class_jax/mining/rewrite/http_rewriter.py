"""Question rewriting through any OpenAI-compatible chat/completions server (vLLM, llama.cpp, TGI, hosted APIs).

Requests run on a bounded thread pool. 429, 5xx, timeouts and connection errors are retried with exponential
backoff and jitter (honouring Retry-After); other 4xx and unusable replies (invalid JSON, missing fields, empty
text) fail that one request with a named reason. The API key is read from an environment variable whose name is
configured; it is sent only in the Authorization header and is never logged, repr'd, or part of the cache key.
"""

import collections
import concurrent.futures
import dataclasses
import json
import logging
import os
import random
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import requests

from class_jax.mining.rewrite import rewriter
from class_jax.mining.rewrite import prompting as rewrite_prompts
from class_jax.runtime.errors import UserError

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class HttpRewriterConfig:
    """Where and how to call the server.

    Attributes:
      base_url: API root, e.g. "http://127.0.0.1:8000/v1"; "/chat/completions" is appended.
      model: the model name the server expects.
      api_key_env: name of the environment variable holding the API key; None for servers without auth.
      temperature: sampling temperature (0 = greedy, reproducible rewrites).
      max_tokens: most tokens in a reply.
      extra_body: more request fields (top_p, stop, seed, ...), sent as given.
      timeout_s: per-request timeout (connect and read).
      max_retries: retries after the first attempt for retryable errors.
      backoff_base_s: first backoff; doubles each retry.
      backoff_max_s: cap on one backoff, and on an honoured Retry-After.
      concurrency: requests in flight at once.
    """

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 96
    extra_body: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    concurrency: int = 8


class _Retryable(Exception):
    """An attempt failed in a way worth retrying; `reason` names it, `retry_after` is the server's hint."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff.


def parse_chat_reply(body: bytes) -> tuple[str | None, str | None]:
    """Extracts the reply text of a chat/completions response body.

    Args:
      body: the raw HTTP body.

    Returns:
      (text, None) on success, or (None, reason) with reason one of "invalid_json", "missing_field",
      "empty_text".
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, "invalid_json"
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None, "missing_field"
    if not isinstance(content, str):
        return None, "missing_field"
    question = rewrite_prompts.clean_model_output(content)
    return (question, None) if question else (None, "empty_text")


class OpenAIChatRewriter(rewrite_prompts.PromptedRewriter):
    """Rewrites clozes by in-context prompting a chat model behind an OpenAI-compatible HTTP API."""

    def __init__(self, config: HttpRewriterConfig, prompts: rewrite_prompts.PromptLibrary, *,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None):
        """Sets up the client.

        Args:
          config: server, model and retry settings.
          prompts: the demonstration library.
          sleep: how to wait between retries (tests pass a recorder).
          rng: jitter source.

        Raises:
          UserError: `config.api_key_env` names an environment variable that is not set.
        """
        super().__init__(prompts)
        self._config = config
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self.__api_key = None
        if config.api_key_env:
            self.__api_key = os.environ.get(config.api_key_env)
            if not self.__api_key:
                raise UserError(f"environment variable {config.api_key_env} (the API key for {config.base_url}) is "
                                f"not set; set it, or use api_key_env=None for a server without authentication")
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._stats: collections.Counter[str] = collections.Counter()
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIChatRewriter(url={self._url!r}, model={self._config.model!r})"

    def config(self) -> dict:
        # The server address, timeouts and retry policy do not change the reply, so they stay out of the key:
        # moving from a local vLLM to a hosted endpoint of the same model keeps the cache valid.
        return {"kind": "openai_chat", "model": self._config.model, "temperature": self._config.temperature,
                "max_tokens": self._config.max_tokens, "extra_body": dict(self._config.extra_body)}

    def stats(self) -> dict:
        with self._stats_lock:
            return dict(sorted(self._stats.items()))

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    def _session(self) -> requests.Session:
        # requests.Session is not documented as thread-safe: one per worker thread.
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            with self._stats_lock:
                self._sessions.append(self._local.session)
        return self._local.session

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        ceiling = min(self._config.backoff_max_s, self._config.backoff_base_s * (2 ** retry))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # Jitter keeps retrying workers out of step.
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._config.backoff_max_s))
        return delay

    def _attempt(self, payload: dict) -> tuple[str | None, str | None]:
        headers = {"Content-Type": "application/json"}
        if self.__api_key:
            headers["Authorization"] = f"Bearer {self.__api_key}"
        self._count("requests")
        try:
            response = self._session().post(self._url, json=payload, headers=headers,
                                            timeout=self._config.timeout_s)
        except requests.Timeout:
            raise _Retryable("timeout") from None
        except requests.ConnectionError:
            raise _Retryable("connection_error") from None
        if response.status_code in _RETRYABLE_STATUS:
            raise _Retryable(f"http_{response.status_code}", _retry_after_seconds(response))
        if response.status_code != 200:
            return None, f"http_{response.status_code}"
        return parse_chat_reply(response.content)

    def _rewrite_one(self, request: rewriter.RewriteRequest) -> rewriter.RewriteResult:
        payload = dict(self._config.extra_body)
        payload.update(model=self._config.model, messages=self.prompt(request),
                       temperature=self._config.temperature, max_tokens=self._config.max_tokens)
        for retry in range(self._config.max_retries + 1):
            try:
                question, failure = self._attempt(payload)
            except _Retryable as error:
                if retry == self._config.max_retries:
                    self._count(f"gave_up/{error.reason}")
                    return rewriter.RewriteResult(None, error.reason)
                delay = self._backoff(retry, error.retry_after)
                self._count("retries")
                logger.debug("%s from %s; retry %d in %.2fs", error.reason, self._url, retry + 1, delay)
                self._sleep(delay)
                continue
            if failure:
                self._count(f"failed/{failure}")
            return rewriter.RewriteResult(question, failure)
        raise AssertionError("unreachable: the loop returns on its last iteration")

    def rewrite(self, requests_: Sequence[rewriter.RewriteRequest],
                on_result: rewriter.ResultCallback | None = None) -> list[rewriter.RewriteResult]:
        results: list[rewriter.RewriteResult | None] = [None] * len(requests_)
        if self._pool is None:
            # One long-lived pool, so worker threads keep their connections alive across batches.
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self._config.concurrency),
                                                               thread_name_prefix="rewrite-http")
        futures = {self._pool.submit(self._rewrite_one, request): index for index, request in enumerate(requests_)}
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception:  # pylint: disable=broad-except
                logger.exception("unexpected error rewriting one cloze; counted as a failure")
                results[index] = rewriter.RewriteResult(None, "client_error")
            if on_result is not None:
                on_result(index, results[index])
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._stats_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
