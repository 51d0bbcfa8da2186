"""The benchmark scripts run end to end at tiny sizes and write sane JSON.

GPU runs of these scripts are rare and short (`bench/gpu_suite.sh`), so a script that no longer runs against the
current code must fail here rather than there.
"""

import json
import pathlib
import sys

import pytest

BENCH_DIR = pathlib.Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH_DIR))

import decode  # noqa: E402  pylint: disable=wrong-import-position
import encode  # noqa: E402  pylint: disable=wrong-import-position
import input_pipeline  # noqa: E402  pylint: disable=wrong-import-position
import model_step  # noqa: E402  pylint: disable=wrong-import-position
import search  # noqa: E402  pylint: disable=wrong-import-position

TIMING = ["--repeats", "1", "--rounds", "1"]


def _run(main, tmp_path: pathlib.Path, *args: str) -> dict:
    out = tmp_path / "result.json"
    assert main([*args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow  # ~40 s; the stage-1 and kernel tests below cover the script's default path
def test_model_step_times_both_sides_with_remat(tmp_path):
    result = _run(model_step.main, tmp_path, "--size", "tiny", "--vocab", "512", "--passages", "2", "--query_len",
                  "8", "--passage_len", "16", "--answer_len", "8", "--remat", "full", *TIMING)
    assert result["remat"] == "full" and result["dtype"] == "float32"
    assert result["class_jax"]["step_s"] > 0 and result["hf"]["step_s"] > 0 and result["speedup_vs_hf"] > 0
    assert 0 < result["mfu"] < 1 and result["class_jax"]["xla_flops"] > 0
    assert "peak_memory_bytes" not in result["class_jax"]  # the CPU backend keeps no memory statistics
    if pathlib.Path("/proc/cpuinfo").exists():  # which host it ran on: figures differ by CPU, not only by load
        assert "cpu_model" in result and set(result["cpu_vector_flags"]) <= {
            "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


def test_model_step_compares_attention_kernels_and_profiles(tmp_path):
    profile_dir = tmp_path / "profile"
    result = _run(model_step.main, tmp_path, "--size", "tiny", "--vocab", "512", "--passages", "2", "--query_len",
                  "8", "--passage_len", "16", "--answer_len", "8", "--skip_hf", "--attention_kernel", "xla",
                  "--compare_attention_kernel", "cudnn", "--profile_dir", str(profile_dir), *TIMING)
    assert result["attention_kernel"] == "xla" and result["class_jax"]["step_s"] > 0
    # A variant that cannot be built (cuDNN's kernel in float32) is recorded instead of ending the run.
    assert "needs dtype='bfloat16'" in result["class_jax_cudnn_attention"]["error"]
    cpu = result["profile"]["/host:CPU"]
    assert cpu["op_seconds_per_call"] > 0 and cpu["ops"]
    # Every profiled operation is one of the compiled step's.
    hlo = (profile_dir / "class_jax_step.hlo.txt").read_text()
    assert all(f"%{name} = " in hlo or f" {name} = " in hlo for name, _, _ in cpu["ops"])


@pytest.mark.slow  # ~60 s of compilation
def test_model_step_stage1_times_the_teacher_against_the_student_and_a_plain_forward(tmp_path):
    result = _run(model_step.main, tmp_path, "--stage", "clr_pt", "--size", "tiny", "--teacher", "tiny", "--vocab",
                  "512", "--teacher_vocab", "300", "--batch", "2", "--passages", "2", "--query_len", "8",
                  "--passage_len", "16", "--teacher_passage_len", "12", "--answer_len", "8", *TIMING)
    assert result["stage"] == "clr_pt" and result["student_rows"] == 4
    assert result["teacher_config"]["retrieval_mode"] == "token" and result["teacher_config"]["dropout_rate"] == 0
    rows = ("with_teacher", "student_only", "teacher_signals", "forward_start", "forward_answer", "encoder_only")
    for name in rows:
        assert result[name]["seconds"] > 0 and 0 < result[name]["mfu"] < 1 and result[name]["xla_flops"] > 0
    # The teacher adds its forward to the student's step; its signals cost a forward plus the ColBERT products.
    assert result["with_teacher"]["flops"] > result["student_only"]["flops"] > 0
    assert result["teacher_signals"]["flops"] > result["forward_start"]["flops"] > result["encoder_only"]["flops"]
    assert result["teacher_cost"] == result["with_teacher"]["ratio_to_student_only"] > 0
    assert result["teacher_signals_over_plain_forward"] > 0


@pytest.mark.slow  # ~35 s (HF peer included)
def test_encode_and_decode_compare_with_hf(tmp_path):
    encoded = _run(encode.main, tmp_path, "--size", "tiny", "--vocab", "512", "--batch", "8", "--length", "16",
                   "--pipeline_passages", "8", *TIMING)
    assert encoded["class_jax"]["finite"] and encoded["class_jax"]["dim"] == encoded["hf"]["dim"]
    assert encoded["pipeline"]["count"] == 8 and 0 < encoded["mfu"] < 1
    decoded = _run(decode.main, tmp_path, "--size", "tiny", "--vocab", "512", "--batch", "2", "--passages", "2",
                   "--query_len", "8", "--passage_len", "16", "--steps", "3", *TIMING)
    assert decoded["class_jax"]["decode_only_matches_predict_batch"]
    assert decoded["end_to_end_speedup_vs_hf"] > 0 and decoded["decode_only_speedup_vs_hf"] > 0


@pytest.mark.parametrize("extra", [[], ["--skip_faiss", "--device_dtype", "float16"]])
def test_search_reports_agreement_and_floors(tmp_path, extra):
    result = _run(search.main, tmp_path, "--sizes", "3000", "--dim", "16", "--queries", "8", "--k", "10",
                  "--repeats", "1", "--encode_passages", "0", "--chunk_rows", "auto", "128", *extra)
    auto, small = result["search"]
    assert auto["index_bytes"] == 3000 * 16 * (2 if extra else 4)  # 375 rows on each of 8 devices, one chunk
    assert (auto["chunk_rows"], auto["chunks_per_device"]) == (375, 1)
    assert (small["chunk_rows"], small["chunks_per_device"]) == (125, 3)
    assert 0 < auto["of_memory_bound"] <= auto["of_roofline"] and auto["jax_qps"] > 0
    if not extra:
        assert auto["topk_agreement"] == 1.0
    assert "faiss_qps" not in small  # faiss is timed once per size


def test_input_pipeline_compares_tokens_and_feeds_a_step(tmp_path):
    result = _run(input_pipeline.main, tmp_path, "--batch", "4", "--passages", "3", "--examples", "12", "--batches",
                  "2", "--workers", "0", "--step_seconds", "0.05", "--feeding_steps", "2")
    assert result["lengths"]["passage_tokens"] == [3, 200] and result["lengths"]["teacher_scores"] == 3
    assert result["class_jax"]["passages_per_s"] > 0 and result["speedup_vs_hf"] > 0
    # Both sides tokenise the same strings with the same SentencePiece model (rare characters may differ, see
    # the script's docstring).
    assert result["token_agreement"] >= 0.9
    fed = result["feeding"]
    assert fed["steps"] == 2 and fed["achieved_step_s"] >= 0.05 and fed["max_wait_s"] >= fed["mean_wait_s"] >= 0
