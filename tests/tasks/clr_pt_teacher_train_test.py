"""`class-jax train` of stage 1 with a neural teacher scoring every global batch, through the stage gin files.

The default test writes the release's three stage-1 files, turns them into FiD directories with `build-fid`, and
trains with a ReAtt-format HF teacher that reads its own (different) vocabulary, in 2 microbatches (GradCache). It
checks that every loss term is logged, that the teacher stays out of the checkpoints, and that a resumed run
refuses a teacher whose files changed. The slow test trains on the demo's mined data with a pooled class_jax
teacher (a params directory).
"""

import json
import pathlib
import shutil
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from class_jax import cli
from class_jax.checkpoints import param_layout
from class_jax.checkpoints import params_io
from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig
from class_jax.runtime import gin_utils
from class_jax.runtime.errors import UserError
from class_jax.trainer import param_sources
from class_jax.trainer import teacher_checkpoint
import class_jax.trainer.train as train_script
from conftest import DEMO_VOCAB_SIZE

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "checkpoints"))
import checkpoint_fixtures as fx  # pylint: disable=wrong-import-position

K = 4  # gin/demo/common.gin NUM_PASSAGES
TERMS = {"loss/kl_teacher_en", "loss/kl_teacher_xx", "loss/kl_en_xx", "loss/ce", "loss/kl_decoder_teacher",
         "loss/kl_answer_alignment"}
WORDS = ["river", "castle", "mountain", "harbour", "library", "bridge", "forest", "temple"]


@pytest.fixture(name="reatt_teacher", scope="module")
def fixture_reatt_teacher(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("reatt") / "reatt"
    pieces = fx.write_sentencepiece(directory / params_io.SPIECE_FILE)
    spec = dict(fx.T5_V10_RELU_TIED, vocab_size=pieces + 28)  # padded past the pieces, as T5's 32128 rows are
    fx.save_hf(fx.build_hf_model(spec, seed=5), directory)
    fx.make_reatt_checkpoint(directory, layer=1, head=2)
    return directory


def _write_release_files(root: pathlib.Path, num_queries: int = 4) -> dict[str, pathlib.Path]:
    root.mkdir(parents=True, exist_ok=True)
    queries, rankings, passages = [], [], ["id\ttext\ttitle"]
    for i in range(num_queries):
        word, place = WORDS[i % len(WORDS)], WORDS[(3 * i + 1) % len(WORDS)]
        queries.append(f"q{i}\tthe {word} of {place} is _X_\t{place}の{word}は{word}です\t{word}")
        rankings.append({"qid": f"q{i}", "pids": [str(10 * i + j) for j in range(K)]})
        passages += [f"{10 * i + j}\tthe {word} lies near the {WORDS[j]} {place}\t{word} {j}" for j in range(K)]
    files = {"queries": root / "mss.parallel.train.txt", "rankings": root / "mss.parallel.train.json",
             "passages": root / "psgs_w100.tsv"}
    files["queries"].write_text("\n".join(queries) + "\n", encoding="utf-8")
    files["rankings"].write_text(json.dumps(rankings))
    files["passages"].write_text("\n".join(passages) + "\n", encoding="utf-8")
    return files


def _train(bindings: list[str], gin_files=("demo/clr_pt.gin", "stages/clr_pt_teacher.gin")):
    gin_utils.parse_gin(list(gin_files), bindings + ["train_script.train.tensorboard = False"])
    try:
        return gin_utils.run_configured(train_script.train)
    finally:
        gin_utils.gin.clear_config()


def test_stage1_trains_on_the_release_files_with_a_reatt_teacher(demo, reatt_teacher, tmp_path):
    files = _write_release_files(tmp_path / "release", num_queries=8)
    fid_dir = tmp_path / "clr_pt_fid" / "{lang}"
    assert cli.main(["build-fid", "--kind", "clr_pt", "--release_queries", str(files["queries"]),
                     "--release_rankings", str(files["rankings"]), "--release_passages", str(files["passages"]),
                     "--langs", "ja", "--k", str(K), "--out", str(fid_dir)]) == 0
    model_dir = tmp_path / "run"
    bindings = [f"VOCAB_PATH = '{demo['vocab']}'", f"NUM_EMBEDDINGS = {DEMO_VOCAB_SIZE}",
                f"MODEL_DIR = '{model_dir}'", f"CLR_PT_FID_DIRS = '{fid_dir}'", "CLR_PT_LANGUAGES = ['ja']",
                f"TEACHER_CHECKPOINT = '{reatt_teacher}'", "BATCH_SIZE = 16", "TRAIN_STEPS = 2", "WARMUP_STEPS = 1",
                "TEACHER_PASSAGE_LENGTH = 24", "train_script.train.num_microbatches = 2"]
    result = _train(bindings)
    assert result.step == 2
    assert TERMS <= set(result.last_metrics), sorted(result.last_metrics)
    assert all(np.isfinite(result.last_metrics[name]) and result.last_metrics[name] > 0 for name in TERMS)
    record = json.loads((model_dir / teacher_checkpoint.RECORD_FILE).read_text())
    assert record["checkpoint"] == str(reatt_teacher)
    # The checkpoint holds the student's parameters and nothing of the teacher's.
    saved, _ = param_sources.read_run_params_to_host(model_dir, None)
    assert set(param_layout.flatten(saved)) == set(param_layout.flatten(jax.device_get(result.state.params)))

    # Resuming with a teacher whose files changed is refused, not silently trained on.
    weights = reatt_teacher / "model.safetensors"
    backup = tmp_path / "weights.backup"
    shutil.copyfile(weights, backup)
    try:
        tensors = fx.read_tensors(reatt_teacher)
        tensors["shared.weight"] = tensors["shared.weight"] * 2
        fx.write_tensors(reatt_teacher, tensors)
        with pytest.raises(UserError, match="changed since this run started"):
            _train([b for b in bindings if not b.startswith("TRAIN_STEPS")] + ["TRAIN_STEPS = 3"])
    finally:
        shutil.copyfile(backup, weights)


@pytest.mark.slow
def test_stage1_trains_on_the_demos_mined_data_with_a_class_jax_teacher(demo, tmp_path):
    from class_jax.fid import builders  # pylint: disable=import-outside-toplevel
    from class_jax.mining import pipeline  # pylint: disable=import-outside-toplevel
    from class_jax.corpus import corpus_io  # pylint: disable=import-outside-toplevel

    languages = ["de", "ja"]
    pipeline.run_mining(pipeline.MiningConfig(corpus=str(demo["corpus"]), out=str(tmp_path / "mined"),
                                              langs=tuple(languages), teacher=pipeline.TeacherSettings(k=K),
                                              audit_sample=0, progress=False))
    passages = builders.load_passages(demo["corpus"], corpus_io.corpus_languages(demo["corpus"]))
    builders.write_clr_pt_fid_files(str(tmp_path / "mined"), passages, str(tmp_path / "fid" / "{lang}"), languages,
                                    num_passages=K)
    # A pooled class_jax teacher: a params directory (as `class-jax export` writes) with the demo vocabulary.
    config = ModelConfig(vocab_size=DEMO_VOCAB_SIZE, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32,
                         num_encoder_layers=2, num_decoder_layers=1, relative_attention_num_buckets=8,
                         dropout_rate=0.0)
    teacher = CLASSModel(config)
    params = nn.unbox(teacher.get_initial_variables(jax.random.key(1), CLASSModel.init_shapes())["params"])
    params_io.save_params(tmp_path / "teacher", jax.tree_util.tree_map(np.asarray, jax.device_get(params)), config,
                          spiece_model=demo["vocab"])
    result = _train([f"VOCAB_PATH = '{demo['vocab']}'", f"NUM_EMBEDDINGS = {DEMO_VOCAB_SIZE}",
                     f"MODEL_DIR = '{tmp_path / 'run'}'", f"CLR_PT_FID_DIRS = '{tmp_path / 'fid' / '{lang}'}'",
                     f"CLR_PT_LANGUAGES = {languages}", f"TEACHER_CHECKPOINT = '{tmp_path / 'teacher'}'",
                     "TRAIN_STEPS = 2", "WARMUP_STEPS = 1"])
    assert result.step == 2 and TERMS <= set(result.last_metrics)
