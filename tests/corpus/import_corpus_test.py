"""`class-jax import-corpus`: DPR / CORA passage files -> a corpus directory that `index` and `build-fid` read."""

import bz2
import gzip
import json
import pathlib
import unicodedata

import numpy as np
import pytest

from class_jax import cli
from class_jax.corpus import corpus_io
from class_jax.corpus import import_corpus
from class_jax.retrieval.corpus_source import CorpusSource
from class_jax.tasks import fid_files

# DPR's psgs_w100.tsv as csv.writer(delimiter='\t') writes it: a header, then fields quoted only when they hold a
# quote, tab or newline, with "" for a quote. Each entry: (raw line(s), expected id, text, title).
DPR_ROWS = [
    ('1\t"Aaron Aaron ( or ; ""Ahärôn"") is a prophet"\tAaron', "1", 'Aaron Aaron ( or ; "Ahärôn") is a prophet', "Aaron"),
    ("2\tSo the Lord said to Moses\tAaron", "2", "So the Lord said to Moses", "Aaron"),
    ('3\t"a tab\there and a\nnewline inside quotes"\t"Title, with ""quotes"""', "3",
     "a tab\there and a\nnewline inside quotes", 'Title, with "quotes"'),
    ("4\tPlain text of the fourth passage\tB", "4", "Plain text of the fourth passage", "B"),
    ("21015300\tThe last passage\tZ", "21015300", "The last passage", "Z"),
]

# CORA's all_w100.tsv: the same layout, titles that are not NFC (a combining accent), languages from id prefixes.
NON_NFC_TITLE = "Cafe\u0301 de Flore"
CORA_ROWS = [
    ("en_1\tEnglish passage one\tAaron", "en_1", "en", "English passage one", "Aaron"),
    (f'ar_7\t"نص ""عربي""\tمع علامة"\t{NON_NFC_TITLE}', "ar_7", "ar", 'نص "عربي"\tمع علامة',
     unicodedata.normalize("NFC", NON_NFC_TITLE)),
    ("ja-3\t日本語の文章\t東京", "ja-3", "ja", "日本語の文章", "東京"),
    ('en_2\t"two\nlines"\tB', "en_2", "en", "two\nlines", "B"),
    ("ar_8\tنص آخر\tعنوان", "ar_8", "ar", "نص آخر", "عنوان"),
]


def _write(path: pathlib.Path, lines: list[str], header: str = "id\ttext\ttitle") -> pathlib.Path:
    data = ("\n".join(([header] if header else []) + lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    elif path.suffix == ".bz2":
        path.write_bytes(bz2.compress(data))
    else:
        path.write_bytes(data)
    return path


def _import(input_path, out, fmt="dpr", *extra) -> int:
    return cli.main(["import-corpus", "--format", fmt, "--input", str(input_path), "--out", str(out),
                     "--no_progress", *extra])


def _rows(root, langs=None) -> list[tuple[str, str, str]]:
    """The corpus as `class-jax index` reads it."""
    source = CorpusSource.plan(root, langs)
    return [(r.passage_id, r.title, r.text) for r in source.iter_rows(0, source.num_rows)]


def _files(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.gz", ".tsv.bz2"])
def test_dpr_file_imports_to_exactly_its_passages(tmp_path, suffix, capsys):
    source = _write(tmp_path / f"psgs_w100{suffix}", [row[0] for row in DPR_ROWS])
    out = tmp_path / "corpus"
    assert _import(source, out, "dpr", "--rows_per_shard", "2") == 0
    assert _rows(out) == [(pid, title, text) for _, pid, text, title in DPR_ROWS]
    assert corpus_io.corpus_languages(out) == ["en"]
    # Three shards of at most two rows, each with the marker CorpusSource counts from.
    assert sorted(p.name for p in (out / "en" / "passages").iterdir()) == [
        "passages-00000.jsonl.gz", "passages-00001.jsonl.gz", "passages-00002.jsonl.gz"]
    assert json.loads((out / "en" / "shards" / "shard-00002.json").read_text()) == {"passages": 1}
    passages = list(corpus_io.iter_passages(out, "en"))
    assert {p.lang for p in passages} == {"en"} and all(p.links == () for p in passages)
    report = json.loads((out / import_corpus.IMPORT_REPORT).read_text())
    assert (report["passages"], report["header_rows"], report["skipped_total"]) == (5, 1, 0)
    assert "en: 5 passages" in capsys.readouterr().out


def test_cora_file_imports_per_language_with_nfc_titles(tmp_path):
    source = _write(tmp_path / "all_w100.tsv", [row[0] for row in CORA_ROWS])
    out = tmp_path / "corpus"
    assert _import(source, out, "cora", "--rows_per_shard", "3") == 0
    assert corpus_io.corpus_languages(out) == ["ar", "en", "ja"]
    for lang in ("ar", "en", "ja"):
        assert _rows(out, [lang]) == [(pid, title, text) for _, pid, row_lang, text, title in CORA_ROWS
                                      if row_lang == lang]
    assert unicodedata.is_normalized("NFC", _rows(out, ["ar"])[0][1])
    report = json.loads((out / import_corpus.IMPORT_REPORT).read_text())
    assert report["passages_by_lang"] == {"ar": 2, "en": 2, "ja": 1}


def test_cora_language_from_a_lang_column_or_lang_flag(tmp_path):
    with_column = _write(tmp_path / "with_lang.tsv", ["1\ttext one\tT\tfi", "2\ttext two\tT\tko"],
                         header="id\ttext\ttitle\tlang")
    assert _import(with_column, tmp_path / "a", "cora") == 0
    assert corpus_io.corpus_languages(tmp_path / "a") == ["fi", "ko"]
    numeric = _write(tmp_path / "numeric.tsv", ["1\ttext one\tT", "te_2\ttext two\tT"])
    assert _import(numeric, tmp_path / "b", "cora", "--lang", "bn") == 0
    assert _rows(tmp_path / "b", ["bn"]) == [("1", "T", "text one")]
    assert _rows(tmp_path / "b", ["te"]) == [("te_2", "T", "text two")]


def test_cora_row_without_a_language_is_named(tmp_path, capsys):
    source = _write(tmp_path / "all_w100.tsv", ["en_1\ttext\tT", "17\ttext\tT"])
    assert _import(source, tmp_path / "out", "cora") == 2
    assert capsys.readouterr().err.strip() == (
        f"class-jax import-corpus: error: {source}: line 3: passage '17': no lang column, no language prefix in the "
        "id (like ar_123) and no --lang (pass --skip_bad_rows to skip and count such rows)")


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.gz"])
def test_a_killed_import_resumes_without_redoing_shards_or_losing_rows(tmp_path, monkeypatch, suffix):
    lines = [f"{i}\t\"text {i}\nsecond line\"\tTitle {i}" for i in range(1, 12)]
    source = _write(tmp_path / f"psgs{suffix}", lines)
    reference = tmp_path / "reference"
    assert _import(source, reference, "dpr", "--rows_per_shard", "3") == 0

    out = tmp_path / "out"
    real_commit = import_corpus._ChunkWriter.commit
    commits = []

    def commit_then_die(self, marker):
        if len(commits) == 2:
            raise KeyboardInterrupt("killed")  # as a kill in the middle of the third shard's commit
        commits.append(self.chunk)
        return real_commit(self, marker)

    monkeypatch.setattr(import_corpus._ChunkWriter, "commit", commit_then_die)
    with pytest.raises(KeyboardInterrupt):
        _import(source, out, "dpr", "--rows_per_shard", "3")
    monkeypatch.setattr(import_corpus._ChunkWriter, "commit", real_commit)
    assert not list(out.rglob("*.partial")) and not (out / "en" / "manifest.json").exists()
    done = {name: (out / "en" / "passages" / name).stat().st_mtime_ns
            for name in ("passages-00000.jsonl.gz", "passages-00001.jsonl.gz")}

    # A kill while a shard is being written (rows added, nothing committed) leaves no trace either.
    real_add = import_corpus._ChunkWriter.add
    added = []

    def add_then_die(self, *args):
        added.append(1)
        if len(added) == 2:
            raise KeyboardInterrupt("killed")
        return real_add(self, *args)

    monkeypatch.setattr(import_corpus._ChunkWriter, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        _import(source, out, "dpr", "--rows_per_shard", "3")
    monkeypatch.setattr(import_corpus._ChunkWriter, "add", real_add)
    assert not list(out.rglob("*.partial"))

    assert _import(source, out, "dpr", "--rows_per_shard", "3") == 0
    assert {name: (out / "en" / "passages" / name).stat().st_mtime_ns for name in done} == done
    report = json.loads((out / import_corpus.IMPORT_REPORT).read_text())
    assert (report["resumed_shards"], report["passages"]) == (2, 11)
    assert _rows(out) == _rows(reference)
    assert {k: v for k, v in _files(out).items() if k.startswith("en/")} == \
        {k: v for k, v in _files(reference).items() if k.startswith("en/")}


def test_duplicates_across_resumed_shards_are_still_found(tmp_path, monkeypatch, capsys):
    source = _write(tmp_path / "psgs.tsv", ["1\ta\tT", "2\tb\tT", "3\tc\tT", "1\td\tT"])
    out = tmp_path / "out"
    real_add = import_corpus._ChunkWriter.add

    def add_until_row_3(self, lang, record, hash_value):
        if record["id"] == "3":
            raise KeyboardInterrupt("killed")  # in the second shard, after the first was committed
        return real_add(self, lang, record, hash_value)

    monkeypatch.setattr(import_corpus._ChunkWriter, "add", add_until_row_3)
    with pytest.raises(KeyboardInterrupt):
        _import(source, out, "dpr", "--rows_per_shard", "2")
    monkeypatch.setattr(import_corpus._ChunkWriter, "add", real_add)
    assert (out / import_corpus.WORK_DIR / "chunk-00000.json").is_file()
    assert _import(source, out, "dpr", "--rows_per_shard", "2") == 2
    assert capsys.readouterr().err.strip().endswith(
        f"{source}: line 5: duplicate id '1' (first seen on an earlier line) (pass --skip_bad_rows to skip and count "
        "such rows)")


def test_rerun_is_a_no_op_and_other_input_or_flags_are_refused(tmp_path, capsys):
    source = _write(tmp_path / "psgs.tsv", ["1\ta\tT", "2\tb\tT"])
    out = tmp_path / "out"
    assert _import(source, out) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert _import(source, out) == 0
    assert "already imported" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    assert _import(source, out, "dpr", "--skip_bad_rows") == 2
    assert "(skip_bad_rows differ); use an empty directory" in capsys.readouterr().err
    other = _write(tmp_path / "other.tsv", ["1\ta\tT", "2\tb\tT", "3\tc\tT"])
    assert _import(other, out) == 2
    assert "input_bytes, input_head_sha256 differ" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert _import(source, foreign) == 2
    assert capsys.readouterr().err.strip() == (f"class-jax import-corpus: error: --out {foreign}: not empty and not an "
                                               "import-corpus output; use an empty directory")


def test_a_run_stopped_before_any_shard_can_be_rerun_with_other_flags(tmp_path):
    source = _write(tmp_path / "psgs.tsv", ["1\ta\tT", "2\t\tT", "3\tc\tT"])
    out = tmp_path / "out"
    assert _import(source, out) == 2
    assert _import(source, out, "dpr", "--skip_bad_rows") == 0
    assert _rows(out) == [("1", "T", "a"), ("3", "T", "c")]


# (kind, data lines (after the header), the message after "FILE: line N: ", N)
BAD_INPUTS = [
    ("columns", ["1\ta\tT", "2\tonly two"], "2 fields, expected 3 (id, text, title)", 3),
    ("columns", ["1\ta\tT\textra"], "4 fields, expected 3 (id, text, title)", 2),
    ("duplicate_id", ["1\ta\tT", "2\tb\tT", "1\tc\tT"], "duplicate id '1' (first seen on line 2)", 4),
    ("empty_id", ["\ta\tT"], "empty id", 2),
    ("empty_text", ["1\ta\tT", "2\t \tT"], "passage '2': empty text", 3),
]


@pytest.mark.parametrize("kind, lines, message, line", BAD_INPUTS)
def test_bad_rows_are_one_line_errors_or_skipped_and_counted(tmp_path, capsys, kind, lines, message, line):
    good = ["100\tgood text\tGood"]
    source = _write(tmp_path / "psgs.tsv", lines + good)
    assert _import(source, tmp_path / "strict") == 2
    err = capsys.readouterr().err
    assert err == (f"class-jax import-corpus: error: {source}: line {line}: {message} (pass --skip_bad_rows to skip "
                   "and count such rows)\n")

    assert _import(source, tmp_path / "lenient", "dpr", "--skip_bad_rows") == 0
    assert f"skipped rows: 1 ({kind.replace('_', ' ')} 1)" in capsys.readouterr().out
    report = json.loads((tmp_path / "lenient" / import_corpus.IMPORT_REPORT).read_text())
    assert report["skipped"] == {kind: 1} and report["skipped_examples"][0]["line"] == line
    assert _rows(tmp_path / "lenient")[-1] == ("100", "Good", "good text")
    assert report["passages"] == len(lines) + len(good) - 1


def test_undecodable_bytes_name_the_row(tmp_path, capsys):
    source = tmp_path / "psgs.tsv"
    source.write_bytes(b"id\ttext\ttitle\n1\tgood\tT\n2\t\"bad \xff\nbyte\"\tT\n3\tgood again\tT\n")
    assert _import(source, tmp_path / "strict") == 2
    assert f"{source}: line 3: bytes that are not valid UTF-8" in capsys.readouterr().err
    assert _import(source, tmp_path / "lenient", "dpr", "--skip_bad_rows") == 0
    assert _rows(tmp_path / "lenient") == [("1", "T", "good"), ("3", "T", "good again")]
    report = json.loads((tmp_path / "lenient" / import_corpus.IMPORT_REPORT).read_text())
    assert report["skipped"] == {"undecodable": 1}


def test_bad_header_and_missing_input_are_one_line_errors(tmp_path, capsys):
    source = _write(tmp_path / "psgs.tsv", ["1\ta\tT"], header="id\ttitle\tbody")
    assert _import(source, tmp_path / "out") == 2
    assert f"{source}: line 1: header ['id', 'title', 'body']: expected the columns id, text, title" in \
        capsys.readouterr().err
    assert _import(tmp_path / "missing.tsv", tmp_path / "out2") == 2
    assert capsys.readouterr().err.strip() == \
        f"class-jax import-corpus: error: --input {tmp_path / 'missing.tsv'}: no such file"


def test_duplicate_hash_set_finds_members_across_merged_levels():
    hashes = import_corpus._IdHashes()
    values = [np.sort(np.asarray([import_corpus.id_hash(f"{c}-{i}") for i in range(n)], dtype=np.uint64))
              for c, n in enumerate([8, 4, 2, 1, 9])]
    for chunk in values:
        hashes.add_sorted(chunk)
    assert len(hashes) == 24 and len(hashes._levels) <= 3
    probe = np.asarray([import_corpus.id_hash("4-8"), import_corpus.id_hash("9-9"), import_corpus.id_hash("0-0")],
                       dtype=np.uint64)
    assert hashes.contains(probe).tolist() == [True, False, True]


def test_build_fid_with_bm25_runs_on_an_imported_corpus(tmp_path):
    source = _write(tmp_path / "psgs_w100.tsv", [
        "1\tThe Eiffel Tower is in Paris, France.\tEiffel Tower",
        "2\tMount Fuji is the highest mountain in Japan.\tMount Fuji",
        '3\t"The ""Nile"" is a river\tin Africa."\tNile',
        "4\tBerlin is the capital of Germany.\tBerlin",
    ])
    corpus = tmp_path / "corpus"
    assert _import(source, corpus) == 0
    questions = tmp_path / "questions.jsonl"
    corpus_io.write_jsonl(questions, [
        {"id": "q1", "lang": "ja", "question": "Where is the Eiffel Tower?", "answers": ["Paris"]},
        {"id": "q2", "lang": "ko", "question": "Which is the highest mountain in Japan?", "answers": ["Mount Fuji"]},
    ])
    out = tmp_path / "fid"
    assert cli.main(["build-fid", "--kind", "finetune", "--retriever", "bm25", "--corpus", str(corpus),
                     "--questions", str(questions), "--out", str(out), "--k", "2"]) == 0
    examples = list(fid_files.read_fid_examples(str(out)))
    assert [e.id for e in examples] == ["q1", "q2"]
    assert [e.passages[0].id for e in examples] == ["1", "2"]
    assert examples[0].passages[0].title == "Eiffel Tower"
