"""A seeded fuzz suite over the commands users feed files and flags to: no traceback, no silent acceptance.

Targets: the four scorer commands (gold and prediction files), `ingest` (dumps and langlinks), `build-fid`
(question files), `mine` (corpus shards) and `train` (gin flags). Each target builds a small valid input once,
then every case mutates it (see fuzz_cases.py for the oracle). The default run takes the seeds in DEFAULT_SEEDS;
`pytest -m slow tests/fuzz` runs SLOW_SEEDS more. A failing case is reproduced by its test id.
"""

import collections
import json
import pathlib
import random
import shutil
import sys

import pytest

import fuzz_cases as fc
from fuzz_cases import Case

# `train` cases run the trainer tests' tiny model, which lives in tests/trainer (no conftest here: pytest would
# import it as the top-level module `conftest` that other test folders import names from).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "trainer"))

DEFAULT_SEEDS = range(3)
SLOW_SEEDS = range(3, 23)
CASES_PER_SEED = {"xor_full": 14, "xor_retrieve": 14, "xor_engspan": 8, "mkqa": 14, "ingest": 12, "langlinks": 6,
                  "build_fid": 8, "mine": 1, "train": 6, "flags": 10}

GOLD_SCHEMA = {"id": "id", "question": "str?", "answers": "answers", "lang": "str"}
QUESTION_SCHEMA = {**GOLD_SCHEMA, "question": "str"}  # build-fid needs the question text
RETRIEVE_PRED_SCHEMA = {"id": "id", "lang": "str", "ctxs": "list"}
MKQA_SCHEMA = {"example_id": "id", "queries": "map", "answers": "map"}
MKQA_PRED_SCHEMA = {"example_id": "id", "prediction": "str"}

_QUESTIONS = [  # (id, lang, question, answer)
    ("q-ja", "ja", "日本で一番高い山は何ですか？", "富士山"),
    ("q-ko", "ko", "대한민국의 수도는 어디입니까?", "서울"),
    ("q-ru", "ru", "Кто написал роман «Война и мир»?", "Лев Толстой"),
    ("q-ar", "ar", "ما هي عاصمة مصر؟", "القاهرة"),
    ("q-fi", "fi", "Mikä on Suomen pääkaupunki?", "Helsinki"),
    ("q-te", "te", "భారతదేశ రాజధాని ఏది?", "న్యూఢిల్లీ"),
    ("q-bn", "bn", "বাংলাদেশের রাজধানী কোথায়?", "ঢাকা"),
]


def _gold_records() -> list[dict]:
    return [{"id": qid, "question": question, "answers": [answer], "lang": lang, "split": "dev"}
            for qid, lang, question, answer in _QUESTIONS]


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory) -> pathlib.Path:
    """Valid inputs for every target, written once."""
    root = tmp_path_factory.mktemp("fuzz_seeds")
    fc.write_jsonl(root / "gold.jsonl", [json.dumps(r, ensure_ascii=False) for r in _gold_records()])
    (root / "answers.json").write_text(json.dumps({qid: answer for qid, _, _, answer in _QUESTIONS},
                                                  ensure_ascii=False))
    (root / "ctxs.json").write_text(json.dumps(
        [{"id": qid, "lang": lang, "ctxs": [f"{answer} is the answer.", "Unrelated text."]}
         for qid, lang, _, answer in _QUESTIONS], ensure_ascii=False))
    mkqa_langs = ("en", "ja", "ko", "ru", "ar", "fi")
    mkqa = [{"example_id": str(i), "query": question, "queries": {lang: question for lang in mkqa_langs},
             "answers": {lang: [{"type": "entity", "text": answer, "aliases": []}] for lang in mkqa_langs}}
            for i, (_, _, question, answer) in enumerate(_QUESTIONS)]
    fc.write_jsonl(root / "mkqa.jsonl.gz", [json.dumps(r, ensure_ascii=False) for r in mkqa], compress=True)
    fc.write_jsonl(root / "mkqa_ja_pred.jsonl", [json.dumps(
        {"example_id": str(i), "prediction": answer, "binary_answer": None, "no_answer_prob": 0.1},
        ensure_ascii=False) for i, (_, _, _, answer) in enumerate(_QUESTIONS)])
    return root


# --------------------------------------------------------------------------------------------- file mutations
def _mutate_json_records(rng: random.Random, records: list[dict], schema: dict[str, str], path: pathlib.Path,
                         array: bool) -> tuple[str, bool]:
    """Writes a mutated copy of `records` to `path`; returns (mutation name, must_refuse)."""
    choices = ["wrong_type", "wrong_type", "missing_field", "bytes", "bytes"]
    if any(kind.rstrip("?") == "str" for kind in schema.values()):
        choices.append("odd_but_legal")
    choice = rng.choice(choices)
    if choice == "bytes":
        name = rng.choice(sorted(fc.BYTE_MUTATIONS))
        text = (fc.encode_json(records) if array else "\n".join(fc.encode_json(r) for r in records)).encode()
        if array and name in ("truncated_line", "garbage_line"):
            text = json.dumps(records, ensure_ascii=False, indent=1).encode()
        path.write_bytes(fc.BYTE_MUTATIONS[name](text, rng))
        return f"bytes:{name}", True
    index = rng.randrange(len(records))
    mutator = {"wrong_type": fc.wrong_type, "missing_field": fc.missing_field,
               "odd_but_legal": fc.odd_but_legal}[choice]
    mutated, field = mutator(records[index], schema, rng)
    out = list(records)
    out[index] = mutated
    text = fc.encode_json(out) if array else "\n".join(fc.encode_json(r) for r in out)
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return f"{choice}:{field}", choice != "odd_but_legal"


def _scorer_case(rng: random.Random, case_dir: pathlib.Path, seeds: pathlib.Path, command: str) -> Case:
    gold, pred_name = seeds / "gold.jsonl", "ctxs.json" if command == "eval-xor-retrieve" else "answers.json"
    pred = seeds / pred_name
    target = rng.choice(["gold", "pred", "pred", "path"])
    if target == "path":
        which, path = rng.choice(sorted(fc.bad_paths(case_dir).items()))
        args = ["--data_file", path, "--pred_file", str(pred)] if rng.random() < 0.5 else [
            "--data_file", str(gold), "--pred_file", path]
        return Case(f"{command}/path:{which}", (command, *args), True)
    if target == "gold":
        out = case_dir / "gold.jsonl"
        mutation, refuse = _mutate_json_records(rng, _gold_records(), GOLD_SCHEMA, out, array=False)
        return Case(f"{command}/gold/{mutation}", (command, "--data_file", str(out), "--pred_file", str(pred)),
                    refuse, out.name)
    out = case_dir / pred_name
    if command == "eval-xor-retrieve":
        mutation, refuse = _mutate_json_records(rng, json.loads(pred.read_text()), RETRIEVE_PRED_SCHEMA, out,
                                                array=True)
    else:
        answers = json.loads(pred.read_text())
        key = rng.choice(sorted(answers))
        value = rng.choice([None, 3, ["a"], {}, fc.HUGE_INT, fc.DEEP_NESTING, "\ud800", "x" * 100_000])
        refuse = not isinstance(value, str) or value in (fc.HUGE_INT, fc.DEEP_NESTING)
        if rng.random() < 0.4:
            name = rng.choice(sorted(fc.BYTE_MUTATIONS))
            out.write_bytes(fc.BYTE_MUTATIONS[name](json.dumps(answers, indent=1).encode(), rng))
            mutation, refuse = f"bytes:{name}", True
        else:
            out.write_bytes(fc.encode_json({**answers, key: value}).encode("utf-8", "surrogatepass"))
            mutation = f"value:{type(value).__name__}:{len(str(value))}"
    return Case(f"{command}/pred/{mutation}", (command, "--data_file", str(gold), "--pred_file", str(out)), refuse,
                out.name)


def _mkqa_case(rng: random.Random, case_dir: pathlib.Path, seeds: pathlib.Path) -> Case:
    gold, pred = seeds / "mkqa.jsonl.gz", seeds / "mkqa_ja_pred.jsonl"
    base = ("eval-mkqa", "--language", "ja", "--metric", rng.choice(["cora", "apple", "both"]))
    target = rng.choice(["gold", "gold_gz", "pred", "pred", "flag"])
    if target == "gold_gz":
        out = case_dir / "mkqa.jsonl.gz"
        mutate = rng.choice([fc.corrupt_compressed, fc.truncate_compressed])
        out.write_bytes(mutate(gold.read_bytes(), rng))
        return Case(f"eval-mkqa/gold/{mutate.__name__}", (*base, "--data_file", str(out), "--pred_file", str(pred)),
                    True, out.name)
    if target == "flag":
        value = rng.choice(["xx", "", "JA", "ja ja"])
        return Case(f"eval-mkqa/flag/language={value!r}", ("eval-mkqa", "--language", value, "--data_file",
                                                           str(gold), "--pred_file", str(pred)), True)
    if target == "gold":
        out = case_dir / "mkqa.jsonl"
        records = [json.loads(line) for line in fc.decompress(gold).decode().splitlines()]
        mutation, refuse = _mutate_json_records(rng, records, MKQA_SCHEMA, out, array=False)
        return Case(f"eval-mkqa/gold/{mutation}", (*base, "--data_file", str(out), "--pred_file", str(pred)),
                    refuse, out.name)
    out = case_dir / "ja.jsonl"
    records = [json.loads(line) for line in pred.read_text().splitlines()]
    if rng.random() < 0.3:
        index = rng.randrange(len(records))
        value = rng.choice([-0.5, 1.5, fc.HUGE_INT, "0.3", None, float("nan")])
        records[index] = {**records[index], "no_answer_prob": value}
        text = "\n".join(fc.encode_json(r) for r in records)
        out.write_text(text)
        mutation, refuse = f"no_answer_prob:{str(value)[:12]}", value is not None
    else:
        mutation, refuse = _mutate_json_records(rng, records, MKQA_PRED_SCHEMA, out, array=False)
    return Case(f"eval-mkqa/pred/{mutation}", (*base, "--data_file", str(gold), "--pred_file", str(out)), refuse,
                out.name)


# --------------------------------------------------------------------------------------------------- ingest
@pytest.fixture(scope="module")
def wiki_dir(tmp_path_factory) -> pathlib.Path:
    """Tiny valid English and German dumps (bz2) and English langlinks (gz), in the real formats."""
    from class_jax.demo.world import dump_writer  # pylint: disable=import-outside-toplevel

    root = tmp_path_factory.mktemp("fuzz_wiki")
    for lang, word in (("en", "Page"), ("de", "Seite")):
        pages = [dump_writer.DumpPage(page_id=i + 1, title=f"{word} {i}", namespace=0,
                                      text=f"{word} {i} links to [[{word} {(i + 1) % 6}]] in 19{i}0. " * 30)
                 for i in range(6)]
        dump_writer.write_pages_xml(root / f"{lang}wiki-pages-articles.xml.bz2", lang, pages, {})
    dump_writer.write_langlinks_sql(root / "enwiki-langlinks.sql.gz", "en",
                                    [(i + 1, "de", f"Seite {i}") for i in range(6)])
    return root


def _ingest_case(rng: random.Random, case_dir: pathlib.Path, wiki: pathlib.Path) -> Case:
    dump = wiki / "enwiki-pages-articles.xml.bz2"
    out = case_dir / "corpus"
    base = ("ingest", "--lang", "en", "--out", str(out), "--workers", "1")
    mutated = case_dir / dump.name
    xml = fc.decompress(dump).decode()
    choice = rng.choice(["corrupt", "truncate", "no_siteinfo", "garbage", "duplicate_titles", "unclosed_refs",
                         "bad_utf8", "path", "workers"])
    refuse = True
    if choice == "corrupt":
        mutated.write_bytes(fc.corrupt_compressed(dump.read_bytes(), rng))
    elif choice == "truncate":
        mutated.write_bytes(fc.truncate_compressed(dump.read_bytes(), rng))
    elif choice == "no_siteinfo":
        start, end = xml.index("<siteinfo>"), xml.index("</siteinfo>") + len("</siteinfo>")
        mutated.write_bytes(fc.recompress(mutated, (xml[:start] + xml[end:]).encode()))
    elif choice == "garbage":
        mutated.write_bytes(fc.recompress(mutated, fc.random_bytes(b"", rng)))
    elif choice == "duplicate_titles":
        first = xml.index("<page>")
        page = xml[first: xml.index("</page>") + len("</page>")]
        mutated.write_bytes(fc.recompress(mutated, (xml[:first] + page + xml[first:]).encode()))
    elif choice == "unclosed_refs":
        mutated.write_bytes(fc.recompress(mutated, xml.replace("links to", "<ref>links to" * 50, 1).encode()))
        refuse = False
    elif choice == "bad_utf8":
        raw = xml.encode()
        position = raw.index(b"links to")
        mutated.write_bytes(fc.recompress(mutated, raw[:position] + b"\xff\xfe" + raw[position:]))
        return Case("ingest/bad_utf8", (*base, "--dump", str(mutated), "--invalid_bytes", "error"), True,
                    mutated.name)
    elif choice == "path":
        which, path = rng.choice(sorted(fc.bad_paths(case_dir).items()))
        return Case(f"ingest/path:{which}", (*base, "--dump", path), True)
    else:
        value = rng.choice(["0", "-1", "abc", "1e9"])
        return Case(f"ingest/workers={value}", ("ingest", "--lang", "en", "--out", str(out), "--dump", str(dump),
                                                "--workers", value), True)
    return Case(f"ingest/{choice}", (*base, "--dump", str(mutated)), refuse, mutated.name)


def _langlinks_case(rng: random.Random, case_dir: pathlib.Path, wiki: pathlib.Path, corpus: pathlib.Path) -> Case:
    shutil.copytree(corpus, case_dir / "corpus")
    links = wiki / "enwiki-langlinks.sql.gz"
    sql = fc.decompress(links).decode()
    mutated = case_dir / links.name
    choice = rng.choice(["empty", "random", "other_table", "corrupt", "truncate", "truncated_row"])
    data = {"empty": lambda: b"", "random": lambda: fc.random_bytes(b"", rng),
            "other_table": lambda: sql.replace("`langlinks`", "`pagelinks`").encode(),
            "truncated_row": lambda: sql[: sql.rindex("),(") + 6].encode()}
    if choice in ("corrupt", "truncate"):
        mutate = fc.corrupt_compressed if choice == "corrupt" else fc.truncate_compressed
        mutated.write_bytes(mutate(links.read_bytes(), rng))
    else:
        mutated.write_bytes(fc.recompress(mutated, data[choice]()))
    return Case(f"ingest/langlinks:{choice}", ("ingest", "--lang", "en", "--out", str(case_dir / "corpus"),
                                               "--langlinks", str(mutated), "--workers", "1"), True, mutated.name)


# ------------------------------------------------------------------------------------------ build-fid, mine
@pytest.fixture(scope="module")
def corpus_dir(wiki_dir, tmp_path_factory) -> pathlib.Path:
    """The tiny dump ingested: a valid corpus for build-fid and mine."""
    from class_jax import cli  # pylint: disable=import-outside-toplevel

    out = tmp_path_factory.mktemp("fuzz_corpus") / "corpus"
    for lang in ("en", "de"):
        assert cli.main(["ingest", "--lang", lang, "--out", str(out), "--workers", "1", "--no_progress",
                         "--dump", str(wiki_dir / f"{lang}wiki-pages-articles.xml.bz2")]) == 0
    assert cli.main(["ingest", "--lang", "en", "--out", str(out), "--no_progress",
                     "--langlinks", str(wiki_dir / "enwiki-langlinks.sql.gz")]) == 0
    return out


def _build_fid_case(rng: random.Random, case_dir: pathlib.Path, corpus: pathlib.Path) -> Case:
    out = case_dir / "questions.jsonl"
    mutation, refuse = _mutate_json_records(rng, _gold_records(), QUESTION_SCHEMA, out, array=False)
    k = rng.choice(["2", "2", "2", "0", "-3"])
    refuse = refuse or k != "2"
    return Case(f"build-fid/{mutation}/k={k}", (
        "build-fid", "--kind", "finetune", "--corpus", str(corpus), "--out", str(case_dir / "fid"),
        "--questions", str(out), "--passage_langs", "en", "--k", k), refuse, out.name if k == "2" else None)


def _mine_case(rng: random.Random, case_dir: pathlib.Path, corpus: pathlib.Path) -> Case:
    copy = case_dir / "corpus"
    shutil.copytree(corpus, copy)
    shards = sorted(path for path in copy.rglob("*.gz"))
    shard = rng.choice(shards)
    mutate = rng.choice([fc.corrupt_compressed, fc.truncate_compressed])
    shard.write_bytes(mutate(shard.read_bytes(), rng))
    return Case(f"mine/{shard.relative_to(copy)}:{mutate.__name__}", (
        "mine", "--corpus", str(copy), "--out", str(case_dir / "mined"), "--langs", "de", "--stages", "clr_pt",
        "--no_progress", "--", "--direct_running_mode=in_memory"), True, shard.name)


# --------------------------------------------------------------------------------------------------- train
def _train_case(rng: random.Random, case_dir: pathlib.Path) -> Case:
    import trainer_testing  # pylint: disable=import-outside-toplevel

    model_dir = case_dir / "run"
    choice = rng.choice(["steps", "batch", "macro", "model_dir_file", "lr"])
    extra = {"steps": lambda: f"--gin.TRAIN_STEPS={rng.choice(['-5', '0', repr('abc'), '1e400'])}",
             "batch": lambda: f"--gin.BATCH_SIZE={rng.choice(['0', '-8', repr('eight')])}",
             "macro": lambda: f"--gin.{rng.choice(['TRIAN_STEPS', 'BATCH_SIZ', 'LEARNIN_RATE'])}=3",
             "lr": lambda: f"--gin.LEARNING_RATE={rng.choice(['-1.0', repr('fast'), 'inf'])}",
             "model_dir_file": lambda: None}[choice]()
    if extra is None:
        model_dir.write_text("not a directory")
        args = trainer_testing.tiny_train_args(model_dir)
    else:
        args = trainer_testing.tiny_train_args(model_dir, extra)
    return Case(f"train/{choice}:{extra}", tuple(args[args.index("train"):]), True)


def _flags_case(rng: random.Random, case_dir: pathlib.Path, seeds: pathlib.Path) -> Case:
    gold, ctxs = seeds / "gold.jsonl", seeds / "ctxs.json"
    choice = rng.choice(["workers", "budgets", "unknown"])
    value = rng.choice(["0", "-1", "abc"])
    extra = {"workers": ["--workers", value], "budgets": ["--token_budgets", value],
             "unknown": ["--no_such_flag", value]}[choice]
    return Case(f"eval-xor-retrieve/flag:{choice}={value}",
                ("eval-xor-retrieve", "--data_file", str(gold), "--pred_file", str(ctxs), *extra), True)


# ---------------------------------------------------------------------------------------------- generation
def generate_cases(seed: int, case_root: pathlib.Path, seeds: pathlib.Path, wiki: pathlib.Path,
                   corpus: pathlib.Path) -> list[Case]:
    """Every case of one seed (deterministic given the seed and the fixtures)."""
    rng = random.Random(seed)
    makers = {
        "xor_full": lambda d: _scorer_case(rng, d, seeds, "eval-xor-full"),
        "xor_retrieve": lambda d: _scorer_case(rng, d, seeds, "eval-xor-retrieve"),
        "xor_engspan": lambda d: _scorer_case(rng, d, seeds, "eval-xor-engspan"),
        "mkqa": lambda d: _mkqa_case(rng, d, seeds),
        "ingest": lambda d: _ingest_case(rng, d, wiki),
        "langlinks": lambda d: _langlinks_case(rng, d, wiki, corpus),
        "build_fid": lambda d: _build_fid_case(rng, d, corpus),
        "mine": lambda d: _mine_case(rng, d, corpus),
        "train": lambda d: _train_case(rng, d),
        "flags": lambda d: _flags_case(rng, d, seeds),
    }
    cases = []
    for target, count in CASES_PER_SEED.items():
        for index in range(count):
            case_dir = case_root / f"{seed}-{target}-{index}"
            case_dir.mkdir(parents=True)
            cases.append(makers[target](case_dir))
    return cases


def _run_seeds(seeds_range, tmp_path, seeds_dir, wiki_dir, corpus_dir) -> collections.Counter:
    outcomes, failures = collections.Counter(), []
    for seed in seeds_range:
        for case in generate_cases(seed, tmp_path / f"seed{seed}", seeds_dir, wiki_dir, corpus_dir):
            outcome = fc.run_case(case)
            outcomes[outcome.kind] += 1
            if not fc.acceptable(case, outcome):
                failures.append(f"seed {seed} {case.name}: {outcome.kind}: {outcome.detail}")
    print(f"fuzz: {sum(outcomes.values())} cases, outcomes {dict(outcomes)}")
    assert not failures, f"{len(failures)} bad outcomes:\n" + "\n".join(failures)
    return outcomes


def test_fuzz_default_seeds(tmp_path, seeds_dir, wiki_dir, corpus_dir):
    outcomes = _run_seeds(DEFAULT_SEEDS, tmp_path, seeds_dir, wiki_dir, corpus_dir)
    assert sum(outcomes.values()) == len(DEFAULT_SEEDS) * sum(CASES_PER_SEED.values())
    assert outcomes["refused"] > 0 and outcomes["traceback"] == 0


@pytest.mark.slow
def test_fuzz_more_seeds(tmp_path, seeds_dir, wiki_dir, corpus_dir):
    _run_seeds(SLOW_SEEDS, tmp_path, seeds_dir, wiki_dir, corpus_dir)


def test_the_unmutated_inputs_pass(tmp_path, seeds_dir, wiki_dir, corpus_dir):
    """Every target's valid input runs clean, so a refusal in the fuzz cases is the mutation's doing."""
    gold, answers, ctxs = seeds_dir / "gold.jsonl", seeds_dir / "answers.json", seeds_dir / "ctxs.json"
    valid = [
        ("eval-xor-full", "--data_file", str(gold), "--pred_file", str(answers)),
        ("eval-xor-engspan", "--data_file", str(gold), "--pred_file", str(answers)),
        ("eval-xor-retrieve", "--data_file", str(gold), "--pred_file", str(ctxs)),
        ("eval-mkqa", "--language", "ja", "--metric", "both", "--data_file", str(seeds_dir / "mkqa.jsonl.gz"),
         "--pred_file", str(seeds_dir / "mkqa_ja_pred.jsonl")),
        ("ingest", "--lang", "en", "--out", str(tmp_path / "corpus"), "--workers", "1",
         "--dump", str(wiki_dir / "enwiki-pages-articles.xml.bz2")),
        ("build-fid", "--kind", "finetune", "--corpus", str(corpus_dir), "--out", str(tmp_path / "fid"),
         "--questions", str(gold), "--passage_langs", "en", "--k", "2"),
        ("mine", "--corpus", str(corpus_dir), "--out", str(tmp_path / "mined"), "--langs", "de", "--stages",
         "clr_pt", "--no_progress", "--", "--direct_running_mode=in_memory"),
    ]
    for argv in valid:
        outcome = fc.run_case(Case("valid", argv, False))
        assert outcome.kind in ("accepted", "counted"), (argv[0], outcome)


def test_the_oracle_flags_what_it_is_for(tmp_path):
    accepted = fc.Outcome("accepted", "")
    assert not fc.acceptable(Case("x", (), True), accepted)
    assert fc.acceptable(Case("x", (), False), accepted)
    assert not fc.acceptable(Case("x", (), False), fc.Outcome("traceback", ""))
    missing = tmp_path / "nope.json"
    outcome = fc.run_case(Case("x", ("eval-xor-full", "--data_file", str(missing), "--pred_file", str(missing)),
                               True, missing.name))
    assert outcome.kind == "refused" and "nope.json" in outcome.detail
    assert fc.run_case(Case("x", ("eval-xor-full", "--no_such_flag"), True)).kind == "refused"
