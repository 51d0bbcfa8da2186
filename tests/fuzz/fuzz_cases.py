"""Seeded generation of malformed inputs for the `class-jax` commands, and the oracle that judges each run.

A case is a command line plus what a well-behaved command must do with it:
  - `must_refuse`: the input is broken beyond doubt (truncated JSON, wrong field types, corrupt compression, a
    missing file, an out-of-range flag). The command must exit 2 with a one-line error, or exit 0 having reported
    a count of skipped records: never accept it silently.
  - otherwise the input is odd but may be legal (a lone surrogate in a string, a 1M-character answer, a BOM): any
    clean outcome will do, as long as no traceback escapes.
Every case is generated from (seed, index) alone, so a failure is reproduced by its test id.
"""

import bz2
import contextlib
import dataclasses
import gzip
import io
import json
import os
import pathlib
import random
import re
from typing import Any, Callable, Optional

from class_jax import cli

HUGE_INT = "1" + "0" * 5000  # beyond Python's int-from-string limit
DEEP_NESTING = "[" * 100_000 + "]" * 100_000  # beyond the JSON decoder's recursion limit
_COUNT_RE = re.compile(r"\b(skipp|malformed|invalid|bad|unknown|missing|duplicate|unanswered|unmatched)\w*\b\D{0,60}"
                       r"[1-9]\d*|[1-9]\d*\D{0,60}\b(skipp|malformed|invalid|bad|unknown|missing|duplicate)\w*",
                       re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Case:
    """One generated command run."""

    name: str
    argv: tuple[str, ...]
    must_refuse: bool
    names_file: Optional[str] = None  # the file a one-line error must name, when the input is a file


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a command run ended."""

    kind: str  # "refused" | "counted" | "accepted" | "traceback" | "bad_error"
    detail: str


def run_case(case: Case) -> Outcome:
    """Runs `class-jax <argv>` in process and classifies the ending (never raises)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(case.argv))
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else 2
    except BaseException as e:  # pylint: disable=broad-except  (a traceback is the finding)
        return Outcome("traceback", f"{type(e).__name__}: {str(e)[:300]}")
    stderr = err.getvalue()
    if "Traceback (most recent call last)" in stderr:
        return Outcome("traceback", stderr[-600:])
    if code == 2:
        errors = [line for line in stderr.splitlines() if ": error:" in line]
        if not errors:
            return Outcome("bad_error", f"exit 2 without an error line: {stderr[-300:]!r}")
        message = errors[-1]
        if case.names_file and "unrecognized arguments" not in message and case.names_file not in message:
            return Outcome("bad_error", f"error does not name {case.names_file}: {message[:300]}")
        return Outcome("refused", message[:300])
    if code != 0:
        return Outcome("bad_error", f"exit code {code}: {stderr[-300:]!r}")
    if _COUNT_RE.search(out.getvalue() + stderr):
        return Outcome("counted", (out.getvalue() + stderr)[-300:])
    return Outcome("accepted", out.getvalue()[-200:])


def acceptable(case: Case, outcome: Outcome) -> bool:
    """The oracle: no traceback, a proper one-line error, and no silent acceptance of broken input."""
    if outcome.kind in ("traceback", "bad_error"):
        return False
    return not (case.must_refuse and outcome.kind == "accepted")


# ----------------------------------------------------------------------------------------- byte-level mutations
def _truncate_mid_line(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True)
    index = rng.randrange(len(lines))
    line = lines[index].rstrip(b"\n")
    cut = rng.randrange(1, max(2, len(line) - 1))
    return b"".join(lines[:index]) + line[:cut] + b"\n" + b"".join(lines[index + 1:])


def _garbage_line(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True)
    garbage = rng.choice([b"{not json", b"\xff\xfe\x00garbage", b"[1, 2", b"}{", b"\x00" * 8, b'{"id": }'])
    lines.insert(rng.randrange(len(lines) + 1), garbage + b"\n")
    return b"".join(lines)


def random_bytes(data: bytes, rng: random.Random) -> bytes:
    del data
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))


def _empty(data: bytes, rng: random.Random) -> bytes:
    del data, rng
    return b""


def _deep_nesting(data: bytes, rng: random.Random) -> bytes:
    del data, rng
    return DEEP_NESTING.encode()


BYTE_MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncated_line": _truncate_mid_line, "garbage_line": _garbage_line, "binary": random_bytes, "empty": _empty,
    "deep_nesting": _deep_nesting,
}


def corrupt_compressed(data: bytes, rng: random.Random) -> bytes:
    """Flips bytes inside the compressed body (the header stays, so the file still looks compressed)."""
    body = bytearray(data)
    start = min(len(body) - 1, 20)
    for _ in range(16):
        position = rng.randrange(start, len(body))
        body[position] ^= 0xFF
    return bytes(body)


def truncate_compressed(data: bytes, rng: random.Random) -> bytes:
    """Cuts a compressed file in its middle (a partial download)."""
    return data[: rng.randrange(len(data) // 4, 3 * len(data) // 4)]


# ---------------------------------------------------------------------------------------- record-level mutations
_WRONG_FOR_STRING = (None, 1.5, [], {}, True, ["a"], HUGE_INT, DEEP_NESTING)
_WRONG_FOR_LIST = (None, "text", 3, {}, [1, 2], [None], HUGE_INT, DEEP_NESTING)


def encode_json(value: Any) -> str:
    """JSON text of `value`, where the raw-text markers HUGE_INT / DEEP_NESTING are written unquoted."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace(json.dumps(HUGE_INT), HUGE_INT).replace(json.dumps(DEEP_NESTING), DEEP_NESTING)


def wrong_type(record: dict, schema: dict[str, str], rng: random.Random) -> tuple[dict, str]:
    """Replaces one schema field of `record` by a value of the wrong type; returns it and the field name.

    Schema kinds: "str", "list" (of strings), "id" (string or integer), "answers" (a list of strings or one bare
    string, as the official XOR scorers read it), "map"; a trailing "?" marks an optional field.
    """
    field = rng.choice(sorted(schema))
    kind = schema[field].rstrip("?")
    pool = _WRONG_FOR_LIST if kind in ("list", "answers") else _WRONG_FOR_STRING
    if kind == "answers":
        pool = tuple(value for value in pool if value != "text")
    elif kind == "id":
        pool = tuple(value for value in pool if value != HUGE_INT)
    elif kind == "map":
        pool = ("text", 3, [1], None, DEEP_NESTING)
    return {**record, field: rng.choice(pool)}, field


def missing_field(record: dict, schema: dict[str, str], rng: random.Random) -> tuple[dict, str]:
    """Drops one required field of `record`."""
    field = rng.choice(sorted(name for name, kind in schema.items() if not kind.endswith("?")))
    return {key: value for key, value in record.items() if key != field}, field


def odd_but_legal(record: dict, schema: dict[str, str], rng: random.Random) -> tuple[dict, str]:
    """A legal-but-odd string value: a lone surrogate, a million characters, control characters."""
    fields = [name for name, kind in schema.items() if kind.rstrip("?") == "str"]
    field = rng.choice(fields)
    value = rng.choice(["\ud800 half a pair", "x" * 100_000, "tab\tnew\nline\x00nul", " ", "🙂" * 1000])
    return {**record, field: value}, field


# ------------------------------------------------------------------------------------------------- file helpers
def write_jsonl(path: pathlib.Path, records: list[str], compress: bool = False) -> pathlib.Path:
    data = ("\n".join(records) + "\n").encode("utf-8", "surrogatepass")
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def bad_paths(tmp: pathlib.Path) -> dict[str, str]:
    """Paths that are not readable files: missing, a directory, a name too long, a symlink loop."""
    loop = tmp / "loop"
    if not loop.is_symlink():
        os.symlink(loop, loop)
    (tmp / "a_directory").mkdir(exist_ok=True)
    return {"missing": str(tmp / "does_not_exist.json"), "directory": str(tmp / "a_directory"),
            "too_long": str(tmp / ("n" * 300 + ".json")), "symlink_loop": str(loop)}


def recompress(path: pathlib.Path, data: bytes) -> bytes:
    """`data` compressed the way `path`'s suffix says."""
    if path.suffix == ".bz2":
        return bz2.compress(data)
    if path.suffix == ".gz":
        return gzip.compress(data, mtime=0)
    return data


def decompress(path: pathlib.Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".bz2":
        return bz2.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    return data
