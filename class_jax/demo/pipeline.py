"""The demo's steps, in order: data → stage 1 → stage 2 → fine-tuning, each trained model scored as it is made.

    DIR/wiki/          the generated wiki (`class-jax make-demo-wiki`)
    DIR/corpus/        its ingested corpus (`class-jax ingest`)
    DIR/vocab/         the SentencePiece model trained on it
    DIR/mined/         CLR-PT and MLQA-PT data (`class-jax mine`, BM25 teacher, template rewriter)
    DIR/fid/           FiD example directories of each stage (`class-jax build-fid`)
    DIR/runs/<stage>/  training runs (`class-jax train` with gin/demo/<stage>.gin): checkpoints, metrics, refreshes
    DIR/params/<name>/ params-only checkpoints (`class-jax export`)
    DIR/eval/<name>/   indexes, retrieved passages and decoded answers of each evaluated system
    DIR/report.*       the report (see report.py)

Every step is recorded in DIR/demo_state.json when it completes (ledger.py); a rerun skips what is recorded.
"""

import dataclasses
import pathlib
from typing import Any, Callable

from class_jax.corpus import corpus_io
from class_jax.demo.world import wiki as demo_wiki
from class_jax.mining import pipeline
from class_jax.demo import systems
from class_jax.demo.ledger import Ledger
from class_jax.demo.settings import DemoSettings, StageSteps
from class_jax.runtime.errors import UserError
from class_jax.fid import builders
from class_jax.runtime import gin_utils

# The evaluated systems, in report order: name -> label.
SYSTEMS = {
    "untrained": "untrained model",
    "bm25": "BM25, native-language query",
    "clr_pt": "after stage 1 (CLR-PT)",
    "mlqa_pt": "after stage 2 (MLQA-PT)",
    "finetune": "after fine-tuning (XOR-Full train)",
}
STAGE_GIN = {"clr_pt": "demo/clr_pt.gin", "mlqa_pt": "demo/mlqa_pt.gin", "finetune": "demo/finetune_xor_full.gin"}


class DemoInterrupted(Exception):
    """The demo stopped on a signal (Ctrl-C / SIGTERM): training after saving a checkpoint, any other step once done."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the demo: a ledger name, what the console says, and the work."""

    name: str
    title: str
    fn: Callable[[], Any]
    training: StageSteps | None = None


class DemoPipeline:
    """Builds the demo's step list over a work directory."""

    def __init__(self, workdir: pathlib.Path, settings: DemoSettings):
        self.workdir = workdir.absolute()
        self.settings = settings
        self.paths = systems.DemoPaths(wiki=self.workdir / "wiki", corpus=self.workdir / "corpus",
                                       vocab=self.workdir / "vocab" / "demo.model", vocab_size=settings.vocab_size)
        self.ledger = Ledger(self.workdir, settings.to_json())
        self._lengths: dict[str, int] | None = None

    # ------------------------------------------------------------------------------------------- layout
    def run_dir(self, stage: str) -> pathlib.Path:
        """The training run directory of a stage."""
        return self.workdir / "runs" / stage

    def params_dir(self, system: str) -> pathlib.Path:
        """The exported parameters of a model system."""
        return self.workdir / "params" / system

    def eval_dir(self, system: str) -> pathlib.Path:
        """The evaluation folder of a system."""
        return self.workdir / "eval" / system

    @property
    def lengths(self) -> dict[str, int]:
        """k and the query / passage lengths stage 1 trains with (its configured train dataset; every demo gin file
        takes them from gin/demo/common.gin), for mining, FiD files, indexes and retrieval."""
        if self._lengths is None:
            self._lengths = systems.demo_feature_lengths([STAGE_GIN["clr_pt"]], self._stage_bindings("clr_pt"))
        return self._lengths

    # ---------------------------------------------------------------------------------------------- data
    def _make_wiki(self) -> dict[str, Any]:
        manifest = demo_wiki.make_demo_wiki(self.paths.wiki, size=self.settings.wiki_size, seed=self.settings.seed,
                                            languages=self.settings.languages)
        return {"articles": {lang: c["articles"] for lang, c in manifest["counts"].items()},
                "questions": {name: sum(per_lang.values()) for name, per_lang in manifest["questions"].items()}}

    def _ingest(self) -> dict[str, Any]:
        result = demo_wiki.ingest_demo_wiki(self.paths.wiki, self.paths.corpus)
        return {"passages": {lang: counts.get("passages", 0) for lang, counts in result["languages"].items()},
                "entities": result["entities"].get("entities", 0)}

    def _vocabulary(self) -> dict[str, Any]:
        from class_jax.tasks import vocab  # pylint: disable=import-outside-toplevel
        vocab.train_demo_vocabulary(self.paths.corpus, self.paths.vocab, self.settings.vocab_size)
        return {"path": str(self.paths.vocab), "pieces": self.settings.vocab_size}

    def _mine(self) -> dict[str, Any]:
        manifest = pipeline.run_mining(pipeline.MiningConfig(
            corpus=str(self.paths.corpus), out=str(self.workdir / "mined"), langs=self.settings.target_languages,
            teacher=pipeline.TeacherSettings(k=self.lengths["NUM_PASSAGES"]), audit_sample=0,
            progress=False, beam_args=("--direct_running_mode=in_memory", "--direct_num_workers=1")))
        stages = manifest["stages"]
        languages = self.settings.target_languages
        return {"clr_pt_pairs": {lang: stages["clr_pt"]["counts"][lang]["clozes"] for lang in languages},
                "mlqa_pt_questions": {lang: stages["mlqa_pt_questions"]["counts"][lang]["kept"]
                                      for lang in languages}}

    def _clr_pt_fid(self) -> dict[str, int]:
        english = builders.load_passages(self.paths.corpus, ["en"])
        manifests = builders.write_clr_pt_fid_files(
            str(self.workdir / "mined"), english, str(self.workdir / "fid" / "clr_pt" / "{lang}"),
            self.settings.target_languages, num_passages=self.lengths["NUM_PASSAGES"], overwrite=True)
        return {lang: m["num_examples"] for lang, m in manifests.items()}

    def _all_passages(self) -> dict:
        return builders.load_passages(self.paths.corpus, corpus_io.corpus_languages(self.paths.corpus))

    def _retriever_of(self, system: str):
        index = self.ledger.result(f"eval_{system}")["indexes"]["all"]
        return systems.index_retriever(self.params_dir(system), pathlib.Path(index), self.paths,
                                       self.lengths["QUERY_LENGTH"])

    def _mlqa_pt_fid(self) -> dict[str, int]:
        # The stage-1 retriever's top k (docs/method.md#stage-2-mlqa-pt); refreshes then re-retrieve with the model
        # being trained.
        manifests = builders.write_mlqa_pt_fid_files(
            str(self.workdir / "mined"), self._retriever_of("clr_pt"), self._all_passages(),
            str(self.workdir / "fid" / "mlqa_pt" / "{lang}"), self.settings.target_languages,
            num_passages=self.lengths["NUM_PASSAGES"], overwrite=True)
        return {lang: m["num_examples"] for lang, m in manifests.items()}

    def _finetune_fid(self) -> dict[str, int]:
        count = systems.write_question_fid(self._retriever_of("mlqa_pt"),
                                           self.paths.questions / "xor_train_full.jsonl", self._all_passages(),
                                           self.workdir / "fid" / "finetune", self.lengths["NUM_PASSAGES"],
                                           with_target=True)
        return {"examples": count}

    # ------------------------------------------------------------------------------------------ training
    def _stage_bindings(self, stage: str) -> list[str]:
        """The gin bindings of a stage's run on top of its gin/demo file."""
        steps: StageSteps = getattr(self.settings, stage)
        bindings = self.paths.gin_bindings() + [
            f"MODEL_DIR = '{self.run_dir(stage)}'", f"TRAIN_STEPS = {steps.train_steps}",
            f"WARMUP_STEPS = {steps.warmup_steps}", f"LOG_PERIOD = {steps.log_period}",
            f"RANDOM_SEED = {self.settings.seed}", "train_script.train.tensorboard = False"]
        fid = self.workdir / "fid"
        languages = list(self.settings.target_languages)
        if steps.refresh_every is not None:
            bindings += [f"REFRESH_CORPUS_DIR = '{self.paths.corpus}'", f"REFRESH_EVERY_STEPS = {steps.refresh_every}",
                         "REFRESH_AT_START = False",  # the initial FiD files hold the previous stage's retrieval
                         "refresh.passage_refresh_hooks.progress = False",  # the demo shows one bar per stage
                         "refresh.passage_refresh_hooks.tensorboard = False"]
        if stage == "clr_pt":
            return bindings + [f"CLR_PT_FID_DIRS = '{fid / 'clr_pt' / '{lang}'}'", f"CLR_PT_LANGUAGES = {languages}"]
        if stage == "mlqa_pt":
            return bindings + [f"MLQA_PT_FID_DIRS = '{fid / 'mlqa_pt' / '{lang}'}'", f"MLQA_PT_LANGUAGES = {languages}",
                               f"INITIAL_CHECKPOINT_PATH = '{self.run_dir('clr_pt')}'"]
        return bindings + [f"TRAIN_FID_DIRS = '{fid / 'finetune'}'",
                           f"INITIAL_CHECKPOINT_PATH = '{self.run_dir('mlqa_pt')}'"]

    def _train(self, stage: str) -> dict[str, Any]:
        import class_jax.trainer.train as train_script  # pylint: disable=import-outside-toplevel
        with gin_utils.scoped_config([STAGE_GIN[stage]], self._stage_bindings(stage)):
            result = gin_utils.run_configured(train_script.train)
        if result.preempted:
            raise DemoInterrupted(f"training of {stage} stopped at step {result.step} (checkpoint saved)")
        return {"steps": result.step, "run_dir": str(self.run_dir(stage))}

    def _export(self, stage: str) -> dict[str, str]:
        import class_jax.trainer.export as export_script  # pylint: disable=import-outside-toplevel
        with gin_utils.scoped_config([str(self.run_dir(stage) / "config.gin"), "runs/export.gin"], [
                f"CHECKPOINT_PATH = '{self.run_dir(stage)}'", f"EXPORT_DIR = '{self.params_dir(stage)}'",
                "export_script.export.overwrite = True"]):
            gin_utils.run_configured(export_script.export)
        return {"params": str(self.params_dir(stage))}

    def _untrained(self) -> dict[str, str]:
        """The parameters stage 1 starts from (its initialisation, with the same seed), exported."""
        import jax  # pylint: disable=import-outside-toplevel
        import flax.linen as nn  # pylint: disable=import-outside-toplevel
        from class_jax.checkpoints import params_io  # pylint: disable=import-outside-toplevel
        from class_jax.models.class_model import CLASSModel  # pylint: disable=import-outside-toplevel
        with gin_utils.scoped_config([STAGE_GIN["clr_pt"]], self._stage_bindings("clr_pt")):
            model = gin_utils.run_configured(CLASSModel)
        # The trainer initialises from fold_in(key(seed), 0) (train._restore_or_initialize); the values do not depend
        # on the input shapes (CLASSModel.init_shapes).
        rng = jax.random.fold_in(jax.random.key(self.settings.seed), 0)
        params = nn.unbox(model.get_initial_variables(rng, CLASSModel.init_shapes())["params"])
        params_io.save_params(self.params_dir("untrained"), jax.device_get(params), model.config, overwrite=True)
        return {"params": str(self.params_dir("untrained"))}

    # ---------------------------------------------------------------------------------------- evaluation
    def _evaluate(self, system: str) -> dict[str, Any]:
        if system == "bm25":
            return systems.bm25_system(self.paths, self.settings.recall_at, self.settings.retrieve_depth)
        return systems.model_system(self.params_dir(system), self.paths, self.eval_dir(system),
                                    self.settings.target_languages, self.settings.recall_at,
                                    self.settings.retrieve_depth, self.lengths)

    # ----------------------------------------------------------------------------------------- the steps
    def steps(self) -> list[Step]:
        """Every step of the demo, in order."""
        s = self.settings
        return [
            Step("wiki", f"generate the demo wiki ({s.wiki_size}, {len(s.languages)} languages)", self._make_wiki),
            Step("ingest", "ingest dumps + langlinks into a passage corpus", self._ingest),
            Step("vocab", f"train a {s.vocab_size}-piece SentencePiece vocabulary", self._vocabulary),
            Step("mine", "mine CLR-PT pairs + MLQA-PT questions (BM25 teacher, template rewriter)", self._mine),
            Step("fid_clr_pt", "attach the teacher's passages to the CLR-PT pairs", self._clr_pt_fid),
            Step("params_untrained", "initialise the untrained model", self._untrained),
            Step("eval_untrained", "evaluate: untrained model", lambda: self._evaluate("untrained")),
            Step("eval_bm25", "evaluate: BM25 with native-language queries", lambda: self._evaluate("bm25")),
            Step("train_clr_pt", f"stage 1: CLR-PT, {s.clr_pt.train_steps} steps", lambda: self._train("clr_pt"),
                 training=s.clr_pt),
            Step("params_clr_pt", "export stage 1", lambda: self._export("clr_pt")),
            Step("eval_clr_pt", "evaluate: after stage 1", lambda: self._evaluate("clr_pt")),
            Step("fid_mlqa_pt", "retrieve passages for MLQA-PT with the stage-1 model", self._mlqa_pt_fid),
            Step("train_mlqa_pt", f"stage 2: MLQA-PT with refresh, {s.mlqa_pt.train_steps} steps",
                 lambda: self._train("mlqa_pt"), training=s.mlqa_pt),
            Step("params_mlqa_pt", "export stage 2", lambda: self._export("mlqa_pt")),
            Step("eval_mlqa_pt", "evaluate: after stage 2", lambda: self._evaluate("mlqa_pt")),
            Step("fid_finetune", "retrieve passages for fine-tuning with the stage-2 model", self._finetune_fid),
            Step("train_finetune", f"fine-tune on XOR-Full train, {s.finetune.train_steps} steps",
                 lambda: self._train("finetune"), training=s.finetune),
            Step("params_finetune", "export the fine-tuned model", lambda: self._export("finetune")),
            Step("eval_finetune", "evaluate: after fine-tuning", lambda: self._evaluate("finetune")),
        ]

    def system_results(self) -> dict[str, Any]:
        """The evaluated systems' results, in report order (those evaluated so far)."""
        return {name: self.ledger.result(f"eval_{name}") for name in SYSTEMS if self.ledger.done(f"eval_{name}")}


def check_workdir(workdir: pathlib.Path) -> None:
    """Refuses a work directory that is a file or holds something other than a demo.

    Raises:
      UserError: with the reason.
    """
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir}: not a directory")
    if workdir.is_dir() and any(workdir.iterdir()) and not (workdir / "demo_state.json").is_file():
        raise UserError(f"--workdir {workdir}: not empty and not a demo directory (no demo_state.json)")
