"""Readers of the authors' released stage-1 (CLR-PT) data, which `build-fid --kind clr_pt` turns into FiD files.

The release (github.com/Fantabulous-J/CLASS, `scripts/train_mss_distill_reader.sh`) trains stage 1 on three files:

    mss.parallel.train.txt   one query per line: qid TAB English cloze TAB translation TAB answer
    mss.parallel.train.json  [{"qid": ..., "pids": [passage id, ...]}, ...]: the teacher's top passages, best first
    psgs_w100.tsv            DPR's passages: id TAB text TAB title, after a header line

How the release reads them (its dataloader.py: `GenericDataLoader._load_queries`, `ReaderDataset.__getitem__`,
`GenericDataLoader._load_corpus`), and what is kept here:
- A queries line is stripped of surrounding whitespace, then split at every tab; the four fields are kept as they
  are. The release falls back to 3- and 2-field layouts (other query files); here another count is an error.
- **Masking.** When the translation contains the answer, every occurrence of it is replaced by `_X_` (the release's
  `ReaderDataset.__getitem__` tests whether the answer is a substring of the translation and then calls Python's
  `str.replace` on it: all non-overlapping occurrences, left to right, case-sensitive, nothing stripped; its
  dataloader.py at commit 1753c8916a6a5981ff51330fce7233260c708a56). The English cloze is used as it is. The
  release then normalises the masked translation (`normalize_text.normalize`); here the SeqIO tasks do that when
  NORMALIZE_QUERIES is set (`tasks/text_inputs.normalize_query`), so the files hold the masked text.
- **Language.** The file holds none: the release labels every query of a file named `*parallel*` as "en". The
  caller names the language (build-fid: a `{lang}` template in the path, or a single `--langs`).
- **Rankings.** The release keeps the ranking file's order and each ranking's first k ids; it reads `pids` as
  passage id strings (the corpus keys). Its assertion that a ranking holds at least k ids is relaxed here: shorter
  rankings get empty slots, and the builder counts them.
- **Passages** are read as `class-jax import-corpus --format dpr` reads them (`import_corpus.iter_passage_file`:
  `csv.reader(delimiter='\\t')`, header rows skipped, ids and titles kept as published), streaming; only the
  passages some ranking names are kept.

Every bad input is a `UserError` of one line naming the file and the line (queries, passages) or the list entry
(rankings, `entry [i]`, counted from 0 as in the JSON list) and the problem. The release instead keeps the later of
two equal qids, and fails with a KeyError on a ranking naming an unknown query or passage.
"""

import dataclasses
import json
import sys
from typing import Collection, Iterator, Optional

from class_jax.corpus import dump_reader
from class_jax.corpus import import_corpus
from class_jax.corpus.types import Passage
from class_jax.runtime.errors import UserError

MASK_TOKEN = "_X_"
QUERY_COLUMNS = ("qid", "English cloze", "translation", "answer")


@dataclasses.dataclass(frozen=True)
class ParallelQuery:
    """One line of `mss.parallel.train.txt`.

    Attributes:
      qid: the query id.
      english_cloze: the English cloze (its answer already masked in the release).
      translation: the target-language sentence as released (the answer not yet masked).
      answer: the answer the reader is trained to produce.
      line: the line of the file it was read from (1-based).
    """

    qid: str
    english_cloze: str
    translation: str
    answer: str
    line: int

    @property
    def masked_translation(self) -> str:
        """The target-language query: the translation with the answer masked (`mask_answer`)."""
        return mask_answer(self.translation, self.answer)


@dataclasses.dataclass(frozen=True)
class Ranking:
    """One entry of the ranking JSON.

    Attributes:
      qid: the query it ranks passages for.
      passage_ids: the teacher's passage ids, best first.
      index: the entry's position in the file's list (0-based).
    """

    qid: str
    passage_ids: tuple[str, ...]
    index: int


def mask_answer(translation: str, answer: str, mask_token: str = MASK_TOKEN) -> str:
    """Replaces every occurrence of `answer` in `translation` by `mask_token`, as the release does.

    Args:
      translation: the target-language sentence.
      answer: the answer text (non-empty).
      mask_token: the replacement, `_X_` in the release.

    Returns:
      The masked sentence (`translation` itself when it does not contain the answer).

    Raises:
      ValueError: `answer` is empty (it would match between every two characters).
    """
    if not answer:
        raise ValueError("mask_answer: empty answer")
    return translation.replace(answer, mask_token)


def _text_lines(path: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line) of a UTF-8 text file (plain, .gz or .bz2), streaming.

    Raises:
      UserError: the file cannot be opened or decompressed, or a line is not UTF-8.
    """
    dump_reader.check_input_file(path)
    stream, raw = dump_reader.open_compressed(path)
    number = 0
    with raw, stream:
        try:
            for number, data in enumerate(stream, start=1):
                if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                    data = data[3:]
                try:
                    yield number, data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}: line {number}: bytes that are not valid UTF-8 ({e.reason} at byte "
                                    f"{e.start})") from None
        except dump_reader.DECOMPRESSION_ERRORS as e:
            raise UserError(f"{path}: unreadable after line {number}: {e}") from None


def read_parallel_queries(path: str) -> dict[str, ParallelQuery]:
    """Reads a released parallel-queries file (`mss.parallel.train.txt`).

    Args:
      path: the file: one query per line, `qid TAB English cloze TAB translation TAB answer`. Blank lines are
        skipped.

    Returns:
      qid -> query, in file order.

    Raises:
      UserError: naming the file and line: not 4 tab-separated fields, an empty field, a qid seen on an earlier
        line, bytes that are not UTF-8; or a file without queries.
    """
    queries: dict[str, ParallelQuery] = {}
    for number, line in _text_lines(path):
        stripped = line.strip()
        if not stripped:
            continue
        fields = stripped.split("\t")
        if len(fields) != len(QUERY_COLUMNS):
            raise UserError(f"{path}: line {number}: {len(fields)} tab-separated fields, expected "
                            f"{len(QUERY_COLUMNS)} ({', '.join(QUERY_COLUMNS)})")
        for name, value in zip(QUERY_COLUMNS, fields):
            if not value.strip():
                raise UserError(f"{path}: line {number}: empty {name}")
        qid, english_cloze, translation, answer = fields
        if qid in queries:
            raise UserError(f"{path}: line {number}: qid {qid!r} was already on line {queries[qid].line}")
        queries[qid] = ParallelQuery(qid=qid, english_cloze=english_cloze, translation=translation, answer=answer,
                                     line=number)
    if not queries:
        raise UserError(f"{path}: no queries (expected lines of qid, English cloze, translation, answer)")
    return queries


def _load_json(path: str) -> object:
    """The parsed JSON document of a file (plain, .gz or .bz2).

    Raises:
      UserError: the file cannot be read, is not UTF-8, or is not valid JSON (naming the line and column).
    """
    dump_reader.check_input_file(path)
    stream, raw = dump_reader.open_compressed(path)
    with raw, stream:
        try:
            data = stream.read()
        except dump_reader.DECOMPRESSION_ERRORS as e:
            raise UserError(f"{path}: unreadable: {e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}: line {line}: bytes that are not valid UTF-8 ({e.reason})") from None
    del data  # the text and the parsed document are large enough
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None


def read_rankings(path: str, max_passages: Optional[int] = None) -> list[Ranking]:
    """Reads a released ranking file (`mss.parallel.train.json`).

    Args:
      path: a JSON list of `{"qid": str, "pids": [str, ...]}` objects, the pids best first. Other keys are
        ignored, as the release ignores them.
      max_passages: keep only the first this many ids of each ranking (all are checked); None keeps all.

    Returns:
      The rankings in file order (passage ids interned: rankings share them).

    Raises:
      UserError: malformed JSON (naming line and column), not a list, or an entry (named by its list index and
        qid) that is not an object, lacks a non-empty string qid, lacks a non-empty list of non-empty string pids,
        or repeats an earlier entry's qid.
    """
    data = _load_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of {{\"qid\", \"pids\"}} objects, got a "
                        f"{type(data).__name__}")
    rankings: list[Ranking] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(data):
        where = f"{path}: entry [{index}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object with qid and pids, got {type(entry).__name__}")
        qid = entry.get("qid")
        if not isinstance(qid, str) or not qid:
            raise UserError(f"{where}: 'qid' is missing or not a non-empty string (got {qid!r})")
        where = f"{where} (qid {qid!r})"
        pids = entry.get("pids")
        if not isinstance(pids, list) or not pids:
            raise UserError(f"{where}: 'pids' is missing or not a non-empty list of passage ids")
        for position, pid in enumerate(pids):
            if not isinstance(pid, str) or not pid:
                raise UserError(f"{where}: pids[{position}] is {pid!r}, not a passage id string")
        if qid in first_index:
            raise UserError(f"{where}: qid repeats entry [{first_index[qid]}]")
        first_index[qid] = index
        kept = pids if max_passages is None else pids[:max_passages]
        rankings.append(Ranking(qid=qid, passage_ids=tuple(sys.intern(pid) for pid in kept), index=index))
    if not rankings:
        raise UserError(f"{path}: no rankings (an empty list)")
    return rankings


def read_passages(path: str, wanted: Collection[str]) -> dict[str, Passage]:
    """Streams a DPR-style passage file (`psgs_w100.tsv`) and keeps the passages whose id is in `wanted`.

    Every row is read and checked, as `class-jax import-corpus --format dpr` reads it, but only the wanted
    passages are kept in memory.

    Args:
      path: `id TAB text TAB title` rows after a header (plain, .gz or .bz2; csv quoting as DPR writes it).
      wanted: the passage ids to keep.

    Returns:
      id -> passage (language "en") for the wanted ids present in the file. Ids that are absent are the
      caller's to report: it knows which ranking named them.

    Raises:
      UserError: naming the file and line: a row with another field count, an empty id or text, bytes that are not
        UTF-8, a malformed header, or a wanted id on a second row.
    """
    settings = import_corpus.ImportSettings(format="dpr")
    found: dict[str, Passage] = {}
    for line, record in import_corpus.iter_passage_file(path, settings):
        passage_id = record["id"]
        if passage_id not in wanted:
            continue
        if passage_id in found:
            raise UserError(f"{path}: line {line}: passage id {passage_id!r} is on an earlier row too")
        found[passage_id] = Passage(passage_id=passage_id, lang=record["lang"], title=record["title"],
                                    text=record["text"])
    return found
