"""`class-jax mine`: runs the mining stages over an ingested corpus, resumably, and writes the manifest.

Steps in order (the user picks stages; "mlqa_pt" runs both of its steps):
  clr_pt             parallel cloze pairs                       (Beam)   -> OUT/clr_pt, OUT/clr_pt_audit
  mlqa_pt            anchor clozes                              (Beam)   -> OUT/mlqa_pt_clozes
  mlqa_pt_questions  clozes rewritten into questions            (driver) -> OUT/mlqa_pt     (unless --rewriter none)
  teacher            BM25 top-k English passages for CLR-PT     (Beam)   -> OUT/clr_pt_teacher

Resumption: a finished step writes OUT/stages/<step>.json last, holding a fingerprint of everything its output
depends on (settings, input checksums, upstream outputs) and its manifest section. A rerun skips a step whose
marker matches and whose files are all present; any other step's folders are cleared and it runs again. Output
files are written under temporary names and renamed when complete, so a killed run leaves no half files behind.
OUT/manifest.json is rewritten after every step from the markers: it describes exactly the finished steps.

Equal inputs and settings give byte-identical outputs and manifest: shards are chosen by qid hash, sorted, and
the manifest holds no times or host names (those are printed instead).
"""

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable, Sequence

from class_jax.mining import mlqa_pt
from class_jax.mining.clr_pt import rule as clr_pt_rule
from class_jax.mining import dataset_io
from class_jax.mining import stages as mining_stages
from class_jax.mining.rewrite import rewriter as rewrite
from class_jax.mining.rewrite import cache as rewrite_cache
from class_jax.mining.rewrite import filters
from class_jax.runtime.errors import UserError
from class_jax.runtime import stages

FORMAT_VERSION = 1
# The --stages values: the two mined stages (class_jax/runtime/stages.py) and the stage-1 teacher.
TEACHER = "teacher"
STAGES = (stages.Stage.CLR_PT.value, stages.Stage.MLQA_PT.value, TEACHER)
MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class RewriterSettings:
    """Which question rewriter the mlqa_pt stage uses.

    Attributes:
      kind: "template" (offline rules), "http" (OpenAI-compatible server), "transformers" (local model) or
        "none" (stop at clozes).
      model: the model name (http) or Hub id / folder (transformers).
      url: the server's API root (http).
      api_key_env: environment variable holding the API key (http); None for servers without auth.
      prompt_dir: folder of per-language demonstration files (default: the package's).
      batch_size: clozes per rewriter call.
      cache: the rewrite cache file (default OUT/rewrite_cache.jsonl); it survives reruns of the stage.
    """

    kind: str = "template"
    model: str | None = None
    url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    prompt_dir: str | None = None
    batch_size: int = 64
    cache: str | None = None


@dataclasses.dataclass(frozen=True)
class TeacherSettings:
    """The stage-1 teacher: BM25 over the corpus's English passages (k1, b, stemmer: see teacher.py)."""

    kind: str = "bm25"
    k: int = 100
    k1: float = 0.9
    b: float = 0.4
    stemmer: str | None = "auto"


@dataclasses.dataclass(frozen=True)
class MiningConfig:
    """Everything `run_mining` needs.

    Attributes:
      corpus: the ingested corpus root.
      out: the output root (local or a tf.io.gfile URL).
      langs: target languages (English is always read as the other side).
      stages: stages to run, a subset of STAGES.
      rule: the CLR-PT parallel rule.
      anchor: the MLQA-PT anchor-cloze settings.
      mlqa_pt_answer_lang: "target" (answers are the anchor texts) or "en" (answers are the linked entities'
        English titles, for the XOR-Retrieve pipeline; anchors whose entity has no English article are dropped).
      rewrite_filter: checks on rewritten questions.
      rewriter: the question rewriter.
      teacher: the teacher settings.
      records_per_shard: target records per output shard.
      audit_sample: CLR-PT pairs per language written to OUT/clr_pt_audit/<lang>.tsv for labelling by hand
        (clr_pt_audit.py); 0 writes none.
      beam_args: Beam pipeline options, passed through (runner, workers, project, ...).
      fail_on_bad_lines: stop with an error when input lines are malformed (default: count, report and go on).
      clr_pt_check: scores the mined CLR-PT records against known facts (e.g. the demo wiki's,
        `class_jax.demo.world.clr_pt_check.checker`); its report goes into the manifest.
      progress: show progress bars for driver-side work.
    """

    corpus: str
    out: str
    langs: tuple[str, ...]
    stages: tuple[str, ...] = STAGES
    rule: clr_pt_rule.ParallelRuleConfig = clr_pt_rule.ParallelRuleConfig()
    anchor: mlqa_pt.AnchorClozeConfig = mlqa_pt.AnchorClozeConfig()
    mlqa_pt_answer_lang: str = mlqa_pt.TARGET_ANSWERS
    rewrite_filter: filters.RewriteFilterConfig = filters.RewriteFilterConfig()
    rewriter: RewriterSettings = RewriterSettings()
    teacher: TeacherSettings = TeacherSettings()
    records_per_shard: int = 50_000
    audit_sample: int = 200
    beam_args: tuple[str, ...] = ()
    fail_on_bad_lines: bool = False
    clr_pt_check: Callable[[list[dict]], dict] | None = None
    progress: bool = True


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _flag_value(args: Sequence[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def beam_options(beam_args: Sequence[str]):
    """Pipeline options: the given ones, plus a multi-process DirectRunner on all cores unless told otherwise."""
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel

    args = list(beam_args)
    runner = _flag_value(args, "--runner")
    if runner is None:
        runner = "DirectRunner"
        args.append("--runner=DirectRunner")
    if runner.lower() in ("directrunner", "direct"):
        if _flag_value(args, "--direct_num_workers") is None:
            args.append(f"--direct_num_workers={os.cpu_count() or 1}")
        if _flag_value(args, "--direct_running_mode") is None:
            args.append("--direct_running_mode=multi_processing")
    return PipelineOptions(args)


def _nest(counts: dict[str, int]) -> dict:
    """{"rejected/x": 3, "kept": 5} -> {"kept": 5, "rejected": {"x": 3}}."""
    nested: dict = {}
    for key, value in sorted(counts.items()):
        group, _, name = key.partition("/")
        if name:
            nested.setdefault(group, {})[name] = value
        else:
            nested[key] = value
    return nested


def _graphs():
    """The Beam stage graphs (imported on first use; importing Beam takes seconds)."""
    from class_jax.mining import beam as mining_beam  # pylint: disable=import-outside-toplevel
    return mining_beam


class _Run:
    """One invocation: validates inputs, runs or skips each step, keeps the manifest current."""

    def __init__(self, config: MiningConfig, rewriter_factory: Callable[[], rewrite.Rewriter] | None):
        self.config = config
        self.out = config.out.rstrip("/")
        self.rewriter_factory = rewriter_factory
        self.corpus = mining_stages.locate_corpus(config.corpus, config.langs)
        self.corpus_reference = mining_stages.corpus_reference(self.corpus, config.langs)

    # -- markers ---------------------------------------------------------------------------------------------------

    def marker_path(self, step: str) -> str:
        return dataset_io.join(self.out, "stages", f"{step}.json")

    def finished(self, step: str, fingerprint: str) -> dict | None:
        """The step's section when its marker matches `fingerprint` and all its files are intact, else None."""
        marker = dataset_io.read_json(self.marker_path(step))
        if not marker or marker.get("fingerprint") != fingerprint:
            return None
        if not dataset_io.files_intact(self.out, marker["section"]["files"]):
            return None
        return marker["section"]

    def clear(self, step: str) -> None:
        for folder in STEPS_BY_NAME[step].folders + (f".work/{step}",):
            dataset_io.remove_tree(dataset_io.join(self.out, folder))
        dataset_io.remove_file(self.marker_path(step))

    # -- steps -----------------------------------------------------------------------------------------------------

    def common_settings(self) -> dict:
        return {"langs": list(self.config.langs), "records_per_shard": self.config.records_per_shard}

    def clr_pt_settings(self, sections: dict) -> dict:
        del sections
        config = self.config
        return {**self.common_settings(), "corpus": self.corpus_reference, "rule": config.rule.to_json(),
                "audit_sample": config.audit_sample}

    def answer_lang_settings(self) -> dict:
        # Named only when not the default: default-mode fingerprints and manifests stay what they were, so earlier
        # outputs are still reused, while an English-answer run never reuses target-answer outputs or vice versa.
        answer_lang = self.config.mlqa_pt_answer_lang
        return {} if answer_lang == mlqa_pt.TARGET_ANSWERS else {"answer_lang": answer_lang}

    def mlqa_pt_settings(self, sections: dict) -> dict:
        del sections
        return {**self.common_settings(), "corpus": self.corpus_reference,
                "anchor": dataclasses.asdict(self.config.anchor), **self.answer_lang_settings()}

    def questions_settings(self, sections: dict) -> dict:
        config = self.config
        return {"langs": list(config.langs), "clozes": _digest(sections["mlqa_pt"]["files"]),
                "rewriter": mining_stages.rewriter_fingerprint(config.rewriter),
                "filter": dataclasses.asdict(config.rewrite_filter), **self.answer_lang_settings()}

    def teacher_settings(self, sections: dict) -> dict:
        return {**self.common_settings(), "clr_pt": _digest(sections["clr_pt"]["files"]),
                "english_passages": self.corpus_reference["languages"]["en"],
                "teacher": dataclasses.asdict(self.config.teacher)}

    def run_beam(self, step: str, build: Callable) -> dict:
        # Beam is imported only when a pipeline runs: `class-jax mine --help` and resumed runs stay quick.
        import apache_beam as beam  # pylint: disable=import-outside-toplevel

        work = dataset_io.join(self.out, ".work", step)
        dataset_io.make_dirs(work)
        with beam.Pipeline(options=beam_options(self.config.beam_args)) as pipeline:
            build(pipeline, work)
        counts: dict[str, dict[str, int]] = {}
        for _, lang, name, value in dataset_io.read_json(dataset_io.join(work, "counts.json")):
            counts.setdefault(lang, {})[name] = counts.get(lang, {}).get(name, 0) + value
        bad = [{"file": path, "line": line, "problem": problem}
               for path, line, problem in dataset_io.read_json(dataset_io.join(work, "bad_lines.json"))]
        files = dataset_io.read_json(dataset_io.join(work, "files.json"))
        bad_total = sum(value for per_lang in counts.values() for name, value in per_lang.items()
                        if name.startswith(("bad_", "truncated_")))
        return {"counts": {lang: _nest(values) for lang, values in sorted(counts.items())},
                "bad_lines": {"total": bad_total, "examples": bad}, "files": files}

    def mine_clr_pt(self, sections: dict) -> dict:
        del sections
        config, out = self.config, self.out
        section = self.run_beam("clr_pt", lambda p, work: _graphs().build_clr_pt(
            p, self.corpus, config.langs, config.rule, out, work, config.records_per_shard))
        section["files"] = sorted(section["files"] + self.write_audit_tables(), key=lambda info: info["path"])
        return section

    def mine_mlqa_pt(self, sections: dict) -> dict:
        del sections
        config, out = self.config, self.out
        return self.run_beam("mlqa_pt", lambda p, work: _graphs().build_mlqa_pt(
            p, self.corpus, config.langs, config.anchor, out, work, config.records_per_shard,
            config.mlqa_pt_answer_lang))

    def mine_questions(self, sections: dict) -> dict:
        return self.rewrite(sections["mlqa_pt"])

    def mine_teacher(self, sections: dict) -> dict:
        del sections
        config, out, step = self.config, self.out, TEACHER
        # The index lives only as long as the step: bm25s numbers its vocabulary in set order, so its files differ
        # between processes while the retrieved passages and scores do not. The outputs stay byte-identical.
        index_dir = dataset_io.join(out, ".work", step, "bm25_index")
        description = mining_stages.build_teacher_index(
            self.corpus, index_dir, k1=config.teacher.k1, b=config.teacher.b, stemmer=config.teacher.stemmer,
            mask_token=config.rule.mask_token, progress=config.progress)
        section = self.run_beam(step, lambda p, work: _graphs().build_teacher(
            p, out, config.langs, index_dir, config.teacher.k, work, config.records_per_shard))
        section["teacher"] = description
        return section

    def write_audit_tables(self) -> list[dict]:
        """Writes each language's sample of mined pairs for labelling (see clr_pt_audit.py)."""
        from class_jax.mining.clr_pt import audit as clr_pt_audit  # pylint: disable=import-outside-toplevel

        if self.config.audit_sample <= 0:
            return []
        files = []
        for lang in self.config.langs:
            sample = clr_pt_audit.audit_sample(dataset_io.read_dataset(self.out, "clr_pt", lang),
                                               self.config.audit_sample)
            files.append(dataset_io.write_text_file(
                self.out, f"clr_pt_audit/{lang}.tsv", clr_pt_audit.audit_table(sample, self.config.rule.mask_token),
                len(sample)))
        return files

    def rewrite(self, clozes: dict) -> dict:
        config = self.config
        rewriter = (self.rewriter_factory or (lambda: mining_stages.make_rewriter(config.rewriter,
                                                                                   config.rule.mask_token)))()
        cache_path = config.rewriter.cache or dataset_io.join(self.out, "rewrite_cache.jsonl")
        try:
            with rewrite_cache.RewriteCache(cache_path) as cache:
                reports, files = mining_stages.rewrite_questions(
                    self.out, config.langs, rewriter, cache, config.rewrite_filter, config.rewriter.batch_size,
                    config.progress, total=sum(info["records"] for info in clozes["files"]
                                               if info["path"].endswith(".jsonl")),
                    answer_lang=clozes["settings"].get("answer_lang"))
        finally:
            rewriter.close()
        return {"counts": reports, "rewriter": rewriter.config(), "files": files,
                "bad_lines": {"total": 0, "examples": []}}

    # -- the run ---------------------------------------------------------------------------------------------------

    def steps(self) -> list[str]:
        selected = _parse_stages(self.config.stages)
        steps = []
        for step in STEPS:
            if step.stage not in selected or (step.enabled and not step.enabled(self.config)):
                continue
            if step.check:
                # Checked now, not when the step comes: a missing flag should not cost the earlier stages' run.
                step.check(self.config)
            steps.append(step.name)
        return steps

    def run(self) -> dict:
        sections: dict[str, dict] = {}
        for step in STEPS:
            marker = dataset_io.read_json(self.marker_path(step.name))
            if marker:
                sections[step.name] = marker["section"]
        for step in self.steps():
            upstream = STEPS_BY_NAME[step].upstream
            if upstream and upstream not in sections:
                raise UserError(f"stage {step} needs the {upstream} stage's output in {self.out}; add "
                                f"{upstream} to --stages")
            settings = STEPS_BY_NAME[step].settings(self, sections)
            fingerprint = _digest(settings)
            done = self.finished(step, fingerprint)
            if done is not None:
                print(f"{step}: already done in {self.out} (same inputs and settings), skipped")
                sections[step] = done
                continue
            self.clear(step)
            if sections.pop(step, None) is not None:
                self.write_manifest(sections)  # The manifest must never list files that are gone.
            started = time.time()
            section = {**STEPS_BY_NAME[step].execute(self, sections), "settings": settings}
            self.check_bad_lines(step, section)
            dataset_io.write_json_atomic(self.marker_path(step), {"fingerprint": fingerprint, "section": section})
            dataset_io.remove_tree(dataset_io.join(self.out, ".work", step))
            sections[step] = section
            print(f"{step}: done in {time.time() - started:.1f} s")
            self.write_manifest(sections)
        return self.write_manifest(sections, self.evaluate(sections))

    def check_bad_lines(self, step: str, section: dict) -> None:
        bad = section["bad_lines"]
        if not bad["total"]:
            return
        first = bad["examples"][0] if bad["examples"] else {"file": "?", "line": 0, "problem": "?"}
        where = f"{first['file']}: line {first['line']}: {first['problem']}"
        if self.config.fail_on_bad_lines:
            raise UserError(f"{where} ({bad['total']} malformed input line(s) in stage {step})")
        print(f"warning: {step}: {bad['total']} malformed input line(s) skipped and counted in the manifest; "
              f"first: {where}")

    def write_manifest(self, sections: dict, evaluation: dict | None = None) -> dict:
        finished = {step.name: sections[step.name] for step in STEPS if step.name in sections}
        datasets = {}
        for step, section in finished.items():
            dataset = STEPS_BY_NAME[step].dataset
            answer_lang = section["settings"].get("answer_lang")
            datasets[dataset] = {
                "features": dataset_io.features_of(dataset, answer_lang),
                # Relative to OUT, so that the manifest does not change when the folder moves.
                "tfrecord_patterns": {lang: f"{dataset}/{lang}/{dataset}-{lang}-*.tfrecord"
                                      for lang in section["settings"]["langs"]}}
            if answer_lang:
                # Absent means anchor-text answers (every output older than this option reads so).
                datasets[dataset]["answer_lang"] = answer_lang
        manifest = {
            "format_version": FORMAT_VERSION, "languages": list(self.config.langs), "corpus": self.corpus_reference,
            "stages": finished, "datasets": datasets,
            "files": {info["path"]: {key: info[key] for key in ("records", "bytes", "sha256")}
                      for section in finished.values() for info in section["files"]},
        }
        if evaluation is not None:
            manifest["clr_pt_demo_evaluation"] = evaluation
        dataset_io.write_json_atomic(dataset_io.join(self.out, MANIFEST), manifest)
        return manifest

    def evaluate(self, sections: dict) -> dict | None:
        """Scores the mined CLR-PT records with the configured check, when one was given."""
        if not (self.config.clr_pt_check and "clr_pt" in sections):
            return None
        records = [record for lang in self.config.langs for record in dataset_io.read_dataset(self.out, "clr_pt", lang)]
        return self.config.clr_pt_check(records)


@dataclasses.dataclass(frozen=True)
class MiningStep:
    """One row of the step table: a step's marker name, what selects and feeds it, where it writes, how it runs.

    Attributes:
      name: the step's name: its marker OUT/stages/<name>.json and its key in the manifest's "stages".
      stage: the --stages value that selects it (a member of STAGES).
      dataset: the dataset it writes (a key of dataset_io.FEATURES; its folder OUT/<dataset>).
      folders: the output folders under OUT it owns (cleared before it runs again).
      upstream: the step whose output it reads (None: only the corpus).
      settings: (run, finished sections) -> everything its output depends on (fingerprinted).
      execute: (run, finished sections) -> its manifest section.
      enabled: whether the selected step runs under this config (None: always).
      check: validates its settings before any step runs (None: nothing to check).
    """

    name: str
    stage: str
    dataset: str
    folders: tuple[str, ...]
    upstream: str | None
    settings: Callable[[_Run, dict], dict]
    execute: Callable[[_Run, dict], dict]
    enabled: Callable[[MiningConfig], bool] | None = None
    check: Callable[[MiningConfig], None] | None = None


# In running order.
STEPS = (
    MiningStep("clr_pt", stage="clr_pt", dataset="clr_pt", folders=("clr_pt", "clr_pt_audit"), upstream=None,
               settings=_Run.clr_pt_settings, execute=_Run.mine_clr_pt),
    MiningStep("mlqa_pt", stage="mlqa_pt", dataset="mlqa_pt_clozes", folders=("mlqa_pt_clozes",), upstream=None,
               settings=_Run.mlqa_pt_settings, execute=_Run.mine_mlqa_pt),
    MiningStep("mlqa_pt_questions", stage="mlqa_pt", dataset="mlqa_pt", folders=("mlqa_pt",), upstream="mlqa_pt",
               settings=_Run.questions_settings, execute=_Run.mine_questions,
               enabled=lambda config: config.rewriter.kind != "none",
               check=lambda config: mining_stages.check_rewriter_settings(config.rewriter)),
    MiningStep(TEACHER, stage=TEACHER, dataset="clr_pt_teacher", folders=("clr_pt_teacher",), upstream="clr_pt",
               settings=_Run.teacher_settings, execute=_Run.mine_teacher),
)
STEPS_BY_NAME = {step.name: step for step in STEPS}
STEP_FOLDERS = {step.name: step.folders for step in STEPS}
STEP_DATASETS = {step.name: step.dataset for step in STEPS}


def _parse_stages(names: Sequence[str]) -> set[str]:
    """The --stages values in today's spelling (the old "anchor_qa" for mlqa_pt warns).

    Raises:
      UserError: unknown names (the message lists them and the known ones).
    """
    mined = (stages.Stage.CLR_PT, stages.Stage.MLQA_PT)
    parsed, unknown = set(), []
    for name in names:
        if name == TEACHER:
            parsed.add(name)
            continue
        try:
            parsed.add(stages.parse(name, allowed=mined, what="--stages value").value)
        except ValueError:
            unknown.append(name)
    if unknown:
        raise UserError(f"--stages: unknown stage(s) {', '.join(sorted(set(unknown)))} (known: {', '.join(STAGES)})")
    return parsed


def run_mining(config: MiningConfig, rewriter_factory: Callable[[], rewrite.Rewriter] | None = None) -> dict:
    """Runs (or resumes) the mining stages.

    Args:
      config: inputs, outputs and settings.
      rewriter_factory: builds the question rewriter (default: from `config.rewriter`); tests pass fakes.

    Returns:
      The manifest (also OUT/manifest.json), with "clr_pt_demo_evaluation" when a CLR-PT check was given.

    Raises:
      UserError: bad corpus, languages, stages or settings; malformed input with `fail_on_bad_lines`.
    """
    if config.records_per_shard <= 0:
        raise UserError(f"--records_per_shard must be positive, got {config.records_per_shard}")
    if config.audit_sample < 0:
        raise UserError(f"--audit_sample must not be negative, got {config.audit_sample}")
    if config.mlqa_pt_answer_lang not in mlqa_pt.ANSWER_LANGS:
        raise UserError(f"--mlqa_pt_answer_lang {config.mlqa_pt_answer_lang!r}: choose one of "
                        f"{', '.join(mlqa_pt.ANSWER_LANGS)}")
    return _Run(config, rewriter_factory).run()

