"""An append-only JSONL cache of rewrites, so a rerun after a crash or kill resumes without repeating LLM calls.

One line per successful rewrite: {"key": sha256 hex, "question": text}. The key hashes the rewriter's
output-relevant configuration (never secrets), the exact prompt and the cloze, so changing the model, the
decoding settings or a demonstration invalidates exactly the affected entries. Failures are not stored: they are
retried on the next run.

Durability: every `put` is one `os.write` of whole lines on an O_APPEND descriptor followed by `os.fsync`, so a
kill loses at most the line being written. A torn last line (a kill mid-write) is skipped, counted, and the next
append starts on a fresh line.
"""

import hashlib
import json
import logging
import os
import pathlib
import threading
from typing import Any, Iterable

logger = logging.getLogger(__name__)


def cache_key(rewriter_config: dict, prompt: Any, lang: str, cloze: str, answer: str) -> str:
    """The cache key of one rewrite: sha256 over canonical JSON of everything that determines the output.

    Args:
      rewriter_config: the rewriter's output-relevant settings (from `Rewriter.config()`).
      prompt: the exact prompt sent (chat messages), or None for prompt-less rewriters.
      lang: language code.
      cloze: the cloze.
      answer: the answer.

    Returns:
      64 hex characters.
    """
    payload = {"rewriter": rewriter_config, "prompt": prompt, "lang": lang, "cloze": cloze, "answer": answer}
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RewriteCache:
    """Thread-safe append-only store of finished rewrites.

    Attributes:
      path: the JSONL file.
      skipped_lines: lines of the existing file that could not be read (a torn write), skipped on load.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, str] = {}
        self._lock = threading.Lock()
        self.skipped_lines = 0
        needs_newline = self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if needs_newline:
            self._write_all(b"\n")

    def _load(self) -> bool:
        """Reads existing entries; returns whether the file ends without a newline (a torn last line)."""
        if not self.path.exists():
            return False
        data = self.path.read_bytes()
        for line_number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self._entries[entry["key"]] = entry["question"]
            except (ValueError, KeyError, TypeError):
                self.skipped_lines += 1
                logger.warning("%s:%d: unreadable cache line skipped (torn write?)", self.path, line_number)
        return bool(data) and not data.endswith(b"\n")

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._entries.get(key)

    def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Appends (key, question) pairs durably: one write and one fsync for the lot."""
        lines = []
        with self._lock:
            for key, question in items:
                self._entries[key] = question
                lines.append(json.dumps({"key": key, "question": question}, ensure_ascii=False) + "\n")
            if lines:
                self._write_all("".join(lines).encode("utf-8"))
                os.fsync(self._fd)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def put(self, key: str, question: str) -> None:
        self.put_many([(key, question)])

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> "RewriteCache":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
