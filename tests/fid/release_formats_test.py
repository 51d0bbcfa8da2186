"""`class-jax build-fid --kind clr_pt` from the authors' released stage-1 files: queries, rankings, passages."""

import gzip
import json
import pathlib

import pytest

from class_jax import cli
from class_jax.fid import release_formats
from class_jax.tasks import fid_files

# DPR's psgs_w100.tsv layout: a header, then id, text, title; a quoted field with a tab and "" for a quote.
PASSAGES = {
    "1": ("Tokyo is the capital of Japan.", "Tokyo"),
    "2": ('Mount Fuji ("Fuji-san") is\ta volcano.', "Mount Fuji"),
    "3": ("Seoul is the capital of South Korea.", "Seoul"),
    "4": ("Kyoto was the capital before Tokyo.", "Kyoto"),
    "5": ("Busan is a port city.", "Busan"),
}

# qid, English cloze, translation, answer. ja-1's translation holds the answer twice; ja-2's does not hold it.
QUERIES = {
    "ja": [("ja-1", "_X_ is the capital of Japan.", "Tokyo は日本の首都で、Tokyo は大きい。", "Tokyo"),
           ("ja-2", "_X_ is a volcano.", "富士山は火山です。", "Mount Fuji"),
           ("ja-3", "_X_ was the old capital.", "Kyoto は古い都です。", "Kyoto")],
    "ko": [("ko-1", "_X_ is the capital of South Korea.", "Seoul 은 한국의 수도이다.", "Seoul")],
}
# ja-3 has no ranking; ja-2's ranking is shorter than k = 3.
RANKINGS = {
    "ja": [{"qid": "ja-2", "pids": ["2", "1"]}, {"qid": "ja-1", "pids": ["1", "4", "2", "5"]}],
    "ko": [{"qid": "ko-1", "pids": ["3", "5", "1"]}],
}


def _tsv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in '"\t\n') else value


def _write_passages(path: pathlib.Path, passages=PASSAGES, extra_lines=()) -> pathlib.Path:
    lines = ["id\ttext\ttitle"] + [f"{pid}\t{_tsv_field(text)}\t{title}" for pid, (text, title) in passages.items()]
    path.write_text("\n".join(lines + list(extra_lines)) + "\n", encoding="utf-8")
    return path


def _write_queries(path: pathlib.Path, rows) -> pathlib.Path:
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _write_release(tmp_path: pathlib.Path, langs=("ja", "ko")) -> dict[str, pathlib.Path]:
    for lang in langs:
        _write_queries(tmp_path / f"mss.parallel.train.{lang}.txt", QUERIES[lang])
        (tmp_path / f"mss.parallel.train.{lang}.json").write_text(json.dumps(RANKINGS[lang]), encoding="utf-8")
    return {"queries": tmp_path / "mss.parallel.train.{lang}.txt",
            "rankings": tmp_path / "mss.parallel.train.{lang}.json",
            "passages": _write_passages(tmp_path / "psgs_w100.tsv"),
            "out": tmp_path / "fid" / "{lang}"}


def _build(files, langs=("ja", "ko"), *extra) -> int:
    return cli.main(["build-fid", "--kind", "clr_pt", "--release_queries", str(files["queries"]),
                     "--release_rankings", str(files["rankings"]), "--release_passages", str(files["passages"]),
                     "--out", str(files["out"]), "--langs", *langs, "--k", "3", *extra])


# ------------------------------------------------------------------------------------------------ readers

def test_mask_answer_replaces_every_occurrence_case_sensitively():
    assert release_formats.mask_answer("Tokyo は Tokyo だ", "Tokyo") == "_X_ は _X_ だ"
    assert release_formats.mask_answer("tokyo は東京", "Tokyo") == "tokyo は東京"
    assert release_formats.mask_answer("aaa", "aa") == "_X_a"  # non-overlapping, left to right, as str.replace
    with pytest.raises(ValueError):
        release_formats.mask_answer("text", "")


def test_queries_reader_keeps_fields_and_strips_only_the_line(tmp_path):
    path = tmp_path / "q.txt"
    path.write_bytes(b"\xef\xbb\xbf  q1\tThe _X_ city.\t Die Stadt Berlin. \tBerlin \r\n\n"
                     b"q2\t_X_ river.\tDer Rhein.\tRhine\n")
    queries = release_formats.read_parallel_queries(str(path))
    assert list(queries) == ["q1", "q2"]
    first = queries["q1"]
    # line.strip() strips the line's ends (the qid's leading spaces, the answer's trailing space and \r), not the
    # inner fields: the translation keeps its spaces.
    assert (first.english_cloze, first.translation, first.answer, first.line) == (
        "The _X_ city.", " Die Stadt Berlin. ", "Berlin", 1)
    assert first.masked_translation == " Die Stadt _X_. "
    assert queries["q2"].line == 3 and queries["q2"].masked_translation == "Der Rhein."


def test_rankings_reader_keeps_order_and_cuts_to_k(tmp_path):
    path = tmp_path / "r.json.gz"
    path.write_bytes(gzip.compress(json.dumps([{"qid": "b", "pids": ["3", "1", "2"], "extra": 1},
                                               {"qid": "a", "pids": ["9"]}]).encode()))
    rankings = release_formats.read_rankings(str(path), max_passages=2)
    assert [(r.qid, r.passage_ids, r.index) for r in rankings] == [("b", ("3", "1"), 0), ("a", ("9",), 1)]


def test_passages_reader_keeps_only_the_wanted_passages(tmp_path):
    path = _write_passages(tmp_path / "psgs_w100.tsv")
    passages = release_formats.read_passages(str(path), {"2", "5", "absent"})
    assert sorted(passages) == ["2", "5"]
    assert (passages["2"].title, passages["2"].text, passages["2"].lang) == ("Mount Fuji", PASSAGES["2"][0], "en")


# ------------------------------------------------------------------------------------------------ the command

def test_release_files_become_stage1_fid_directories(tmp_path, capsys):
    files = _write_release(tmp_path)
    assert _build(files) == 0

    ja = list(fid_files.read_fid_examples(str(tmp_path / "fid" / "ja")))
    # Ranking order; ja-3 (no ranking) is not written.
    assert [e.id for e in ja] == ["ja-2", "ja-1"]
    fuji, tokyo = ja
    assert tokyo.lang == "ja"
    assert tokyo.question == "_X_ は日本の首都で、_X_ は大きい。"  # every occurrence masked
    assert tokyo.english_question == "_X_ is the capital of Japan."
    assert tokyo.answers == ("Tokyo",) and tokyo.target == "Tokyo"
    assert [p.id for p in tokyo.passages] == ["1", "4", "2"]  # the ranking's first k = 3, best first
    assert [(p.title, p.text) for p in tokyo.passages] == [PASSAGES[i][::-1] for i in ("1", "4", "2")]
    assert all(p.score == 0.0 for p in tokyo.passages)
    assert tokyo.teacher_scores is None and tokyo.source_passage_id is None
    assert fuji.question == "富士山は火山です。"  # the answer is not in the translation: kept as released
    assert [p.id for p in fuji.passages] == ["2", "1"]  # a short ranking: the third slot is empty
    (korean,) = fid_files.read_fid_examples(str(tmp_path / "fid" / "ko"))
    assert (korean.id, korean.lang, korean.question, korean.target) == (
        "ko-1", "ko", "_X_ 은 한국의 수도이다.", "Seoul")
    assert [p.id for p in korean.passages] == ["3", "5", "1"]

    manifest = fid_files.read_manifest(str(tmp_path / "fid" / "ja"))
    assert manifest["num_passages"] == 3 and manifest["num_examples"] == 2
    assert manifest["has"] == {"english_question": True, "teacher_scores": False, "source_passage_id": False,
                               "target": True}
    meta = manifest["metadata"]
    assert meta["source"] == "release" and meta["queries"] == str(tmp_path / "mss.parallel.train.ja.txt")
    assert (meta["ranked_queries"], meta["unranked_queries"], meta["unranked_examples"], meta["short_rankings"],
            meta["masked_translations"]) == (2, 1, ["ja-3"], 1, 1)
    out = capsys.readouterr().out
    assert f"{tmp_path / 'fid' / 'ja'}: 2 examples, k = 3; 1 queries of " in out
    assert "have no ranking and were not written (e.g. ja-3)" in out


def test_one_rankings_file_for_all_languages_and_passages_from_an_imported_corpus(tmp_path):
    files = _write_release(tmp_path)
    shared = tmp_path / "mss.parallel.train.json"
    shared.write_text(json.dumps(RANKINGS["ko"] + RANKINGS["ja"]), encoding="utf-8")
    corpus = tmp_path / "dpr_w100"
    assert cli.main(["import-corpus", "--format", "dpr", "--input", str(files["passages"]), "--out", str(corpus),
                     "--no_progress"]) == 0
    argv = ["build-fid", "--kind", "clr_pt", "--release_queries", str(files["queries"]), "--release_rankings",
            str(shared), "--corpus", str(corpus), "--out", str(files["out"]), "--langs", "ja", "ko", "--k", "3"]
    assert cli.main(argv) == 0
    assert [e.id for e in fid_files.read_fid_examples(str(tmp_path / "fid" / "ja"))] == ["ja-2", "ja-1"]
    (korean,) = fid_files.read_fid_examples(str(tmp_path / "fid" / "ko"))
    assert [(p.id, p.title) for p in korean.passages] == [("3", "Seoul"), ("5", "Busan"), ("1", "Tokyo")]


def test_one_language_needs_no_template(tmp_path):
    files = _write_release(tmp_path, langs=("ko",))
    files = dict(files, queries=tmp_path / "mss.parallel.train.ko.txt",
                 rankings=tmp_path / "mss.parallel.train.ko.json", out=tmp_path / "fid_ko")
    assert _build(files, ("ko",)) == 0
    assert [e.lang for e in fid_files.read_fid_examples(str(tmp_path / "fid_ko"))] == ["ko"]


# ------------------------------------------------------------------------------------------------ bad input
# Each case: what to break, and the one-line message (with {queries}, {rankings}, {passages} for the ja files).

def _break_queries_columns(tmp_path, files):
    _write_queries(tmp_path / "mss.parallel.train.ja.txt", QUERIES["ja"][:2] + [("ja-3", "_X_ was old.", "Kyoto")])


def _break_queries_empty_field(tmp_path, files):
    # An empty answer cannot be written: it is the last field, and the line's trailing tab is stripped.
    _write_queries(tmp_path / "mss.parallel.train.ja.txt", [("ja-1", "_X_ is.", " ", "Tokyo")] + QUERIES["ja"][1:])


def _break_queries_repeated_qid(tmp_path, files):
    _write_queries(tmp_path / "mss.parallel.train.ja.txt", QUERIES["ja"] + QUERIES["ja"][:1])


def _break_queries_not_utf8(tmp_path, files):
    path = tmp_path / "mss.parallel.train.ja.txt"
    path.write_bytes(path.read_bytes() + b"ja-9\t_X_.\t\xff\xfe\tX\n")


def _break_rankings(entries):
    def breaker(tmp_path, files):
        (tmp_path / "mss.parallel.train.ja.json").write_text(json.dumps(entries), encoding="utf-8")
    return breaker


def _break_rankings_json(tmp_path, files):
    (tmp_path / "mss.parallel.train.ja.json").write_text('[{"qid": "ja-1",\n "pids": ["1", "2"}]', encoding="utf-8")


def _break_passages_columns(tmp_path, files):
    _write_passages(files["passages"], extra_lines=["6\tA passage without a title"])


def _break_passages_repeated_id(tmp_path, files):
    _write_passages(files["passages"], extra_lines=["2\tAgain\tMount Fuji"])


BAD_INPUT = {
    "queries line with 3 columns": (
        _break_queries_columns,
        "{queries}: line 3: 3 tab-separated fields, expected 4 (qid, English cloze, translation, answer)"),
    "queries line with an empty translation": (_break_queries_empty_field, "{queries}: line 1: empty translation"),
    "queries repeating a qid": (_break_queries_repeated_qid, "{queries}: line 4: qid 'ja-1' was already on line 1"),
    "queries not UTF-8": (_break_queries_not_utf8, "{queries}: line 4: bytes that are not valid UTF-8"),
    "ranking names a passage absent from the corpus": (
        _break_rankings([{"qid": "ja-1", "pids": ["1"]}, {"qid": "ja-2", "pids": ["2", "99"]}]),
        "{rankings}: entry [1] (qid 'ja-2'): passage '99' is not in {passages} (1 ranked passage ids are missing in "
        "all)"),
    "ranking qid not in the queries": (
        _break_rankings([{"qid": "ja-1", "pids": ["1"]}, {"qid": "ja-7", "pids": ["2"]}]),
        "{rankings}: entry [1] (qid 'ja-7'): no such qid in {queries}"),
    "malformed JSON": (_break_rankings_json, "{rankings}: line 2 column 19: not valid JSON"),
    "rankings not a list": (_break_rankings({"qid": "ja-1"}),
                            '{rankings}: expected a JSON list of {{"qid", "pids"}} objects, got a dict'),
    "ranking without pids": (_break_rankings([{"qid": "ja-1", "pids": []}]),
                             "{rankings}: entry [0] (qid 'ja-1'): 'pids' is missing or not a non-empty list"),
    "ranking with a number for a pid": (_break_rankings([{"qid": "ja-1", "pids": ["1", 2]}]),
                                        "{rankings}: entry [0] (qid 'ja-1'): pids[1] is 2, not a passage id string"),
    "ranking repeating a qid": (_break_rankings([{"qid": "ja-1", "pids": ["1"]}, {"qid": "ja-1", "pids": ["2"]}]),
                                "{rankings}: entry [1] (qid 'ja-1'): qid repeats entry [0]"),
    "rankings: an empty list": (_break_rankings([]), "{rankings}: no rankings (an empty list)"),
    "corpus line with 2 columns": (_break_passages_columns,
                                   "{passages}: line 7: 2 fields, expected 3 (id, text, title)"),
    "corpus repeating a ranked passage id": (_break_passages_repeated_id,
                                             "{passages}: line 7: passage id '2' is on an earlier row too"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_naming_file_and_place(tmp_path, capsys, case):
    files = _write_release(tmp_path)
    breaker, message = BAD_INPUT[case]
    breaker(tmp_path, files)
    capsys.readouterr()
    assert _build(files) == 2
    err = capsys.readouterr().err
    expected = message.format(queries=tmp_path / "mss.parallel.train.ja.txt",
                              rankings=tmp_path / "mss.parallel.train.ja.json", passages=files["passages"])
    assert err.startswith(f"class-jax build-fid: error: {expected}"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "fid" / "ja" / fid_files.MANIFEST_NAME).exists()


def test_queries_without_a_ranking_are_counted_but_a_language_with_none_ranked_is_an_error(tmp_path, capsys):
    files = _write_release(tmp_path)
    shared = tmp_path / "mss.parallel.train.json"
    shared.write_text(json.dumps(RANKINGS["ja"]), encoding="utf-8")  # one file for both languages, no ko ranking
    capsys.readouterr()
    assert _build(dict(files, rankings=shared)) == 2
    assert capsys.readouterr().err == (f"class-jax build-fid: error: {shared}: ranks none of the 1 queries of "
                                       f"{tmp_path / 'mss.parallel.train.ko.txt'}\n")


@pytest.mark.parametrize("extra, message", [
    (("--kind", "mlqa_pt"), "use them with --kind clr_pt, not mlqa_pt"),
    (("--corpus", "{tmp}"), "exactly one of --release_passages FILE (psgs_w100.tsv) or --corpus ROOT"),
    (("--mined", "{tmp}"), "either --mined or the release's files"),
])
def test_bad_release_flags_are_one_line_errors(tmp_path, capsys, extra, message):
    files = _write_release(tmp_path)
    capsys.readouterr()
    assert _build(files, ("ja", "ko"), *(value.format(tmp=tmp_path) for value in extra)) == 2
    assert message in capsys.readouterr().err


def test_several_languages_need_lang_in_the_queries_path(tmp_path, capsys):
    files = dict(_write_release(tmp_path), queries=tmp_path / "mss.parallel.train.ja.txt")
    capsys.readouterr()
    assert _build(files) == 2
    assert (f"--release_queries {files['queries']}: several --langs need {{lang}} in the path"
            in capsys.readouterr().err)
