"""bench/gpu_step_model.py: kernel accounting of XLA:GPU HLO, and the deviceless compile path."""

import importlib.util
import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))

import gpu_step_model  # noqa: E402  pylint: disable=wrong-import-position

# The shape of what XLA:GPU prints for an optimised module: a cuBLAS call, a cuDNN attention call (keys longer than
# queries, in the [batch, length, heads, head_dim] layout), a reduction fusion and kernel-free bookkeeping.
HLO = """HloModule jit_train_step, entry_computation_layout={()->()}

%region_add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %add.1 = f32[] add(%a, %b)
}

%fused_reduce (param_0: f32[64,32]) -> f32[64] {
  %param_0 = f32[64,32]{1,0} parameter(0)
  %constant_0 = f32[] constant(0)
  ROOT %reduce.1 = f32[64]{0} reduce(%param_0, %constant_0), dimensions={1}, to_apply=%region_add
}

ENTRY %main.1 (x: bf16[400,1024], w: bf16[1024,3072], q: bf16[8,50,16,64], k: bf16[8,70,16,64], \
v: bf16[8,70,16,64], r: f32[64,32]) -> (bf16[400,3072], f32[64]) {
  %x = bf16[400,1024]{1,0} parameter(0)
  %w = bf16[1024,3072]{1,0} parameter(1)
  %custom-call.1 = (bf16[400,3072]{1,0}, s8[4194304]{0}) custom-call(%x, %w), \
custom_call_target="__cublas$lt$matmul", metadata={op_name="jit(train_step)/dot_general"}, \
backend_config={"gemm_backend_config":{"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],\
"rhs_contracting_dimensions":["0"],"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}
  %q = bf16[8,50,16,64]{3,2,1,0} parameter(2)
  %k = bf16[8,70,16,64]{3,2,1,0} parameter(3)
  %v = bf16[8,70,16,64]{3,2,1,0} parameter(4)
  %attention.1 = (bf16[8,16,50,64]{3,1,2,0}, f32[8,16,50]{2,1,0}, u8[0]{0}) custom-call(%q, %k, %v), \
custom_call_target="__cudnn$fmhaScaleBiasSoftmax", backend_config={"cudnn_fmha_backend_config": \
{"bmm1_dot_dimension_numbers": {"lhs_contracting_dimensions": ["3"], "rhs_contracting_dimensions": ["3"], \
"lhs_batch_dimensions": ["0", "2"], "rhs_batch_dimensions": ["0", "2"]}}}
  %r = f32[64,32]{1,0} parameter(5)
  %fusion.1 = f32[64]{0} fusion(%r), kind=kInput, calls=%fused_reduce
  %get-tuple-element.1 = bf16[400,3072]{1,0} get-tuple-element(%custom-call.1), index=0
  ROOT %tuple.1 = (bf16[400,3072]{1,0}, f32[64]{0}) tuple(%get-tuple-element.1, %fusion.1)
}
""".replace("\\\n", "")


def test_account_counts_kernels_bytes_and_flops():
    classes = gpu_step_model.account(HLO)
    assert set(classes) == {gpu_step_model.GEMM, gpu_step_model.ATTENTION, "reduction fusion"}
    gemm = classes[gpu_step_model.GEMM]
    assert gemm.kernels == 1 and gemm.flops == 2 * 400 * 3072 * 1024
    assert gemm.bytes == 400 * 3072 * 2 + 4194304 + 400 * 1024 * 2 + 1024 * 3072 * 2
    attention = classes[gpu_step_model.ATTENTION]
    assert attention.flops == 4 * (8 * 50 * 16 * 64) * 70  # the key length, 70, not the query's 50
    reduction = classes["reduction fusion"]
    assert (reduction.kernels, reduction.bytes, reduction.flops) == (1, 64 * 32 * 4 + 64 * 4, 0)


def test_backward_attention_counts_two_and_a_half_forwards():
    backward = HLO.replace('fmhaScaleBiasSoftmax"', 'fmhaScaleBiasSoftmaxBackward"')
    assert (gpu_step_model.account(backward)[gpu_step_model.ATTENTION].flops
            == 2.5 * gpu_step_model.account(HLO)[gpu_step_model.ATTENTION].flops)


def test_prediction_adds_products_at_efficiency_and_other_kernels_at_bandwidth():
    classes = gpu_step_model.account(HLO)
    prediction = gpu_step_model.predict_seconds(classes, peak_flops=1e12, matmul_efficiency=0.5, bandwidth=1e9)
    products = classes[gpu_step_model.GEMM].flops + classes[gpu_step_model.ATTENTION].flops
    assert prediction["products_s"] == pytest.approx(products / 0.5e12)
    assert prediction["memory_bound_s"] == pytest.approx((64 * 32 * 4 + 64 * 4) / 1e9)
    assert prediction["step_s"] == pytest.approx(prediction["products_s"] + prediction["memory_bound_s"])


def test_an_attention_call_without_dimension_numbers_is_an_error():
    broken = HLO.replace('"lhs_contracting_dimensions": ["3"]', '"lhs_contracting_dimensions": ["1"]')
    with pytest.raises(ValueError, match="attention.1"):
        gpu_step_model.account(broken)


def test_main_compiles_for_an_h100_or_says_what_to_install(tmp_path):
    args = ["--size", "tiny", "--vocab", "512", "--batch", "1", "--passages", "2", "--query_len", "8",
            "--passage_len", "16", "--answer_len", "8", "--remat", "full", "--attention_kernel", "einsum",
            "--out", str(tmp_path / "model.json")]
    cuda_plugin = (importlib.util.find_spec("jax_plugins") is not None
                   and importlib.util.find_spec("jax_plugins.xla_cuda12") is not None)
    if not cuda_plugin:  # CI: CPU JAX only
        with pytest.raises(SystemExit, match=r"no CUDA compiler here.*\.\[cuda\]"):
            gpu_step_model.main(args)
        return
    assert gpu_step_model.main(args) == 0
    variant = json.loads((tmp_path / "model.json").read_text())["variants"]["remat full, einsum attention"]
    assert variant["step_s"] > 0 and variant["peak_gib"] > 0 and gpu_step_model.GEMM in variant["kernels"]
