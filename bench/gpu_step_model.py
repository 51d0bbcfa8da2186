"""Benchmark model: the mT5 FiD training step compiled for an H100 without one, and its time predicted from the HLO.

GPU time is scarce here (a device is lent to some sessions only, for minutes), so the choices a device call should
test are ranked first on the CPU host. With JAX's CUDA plugin installed (`pip install -e ".[cuda]"`) but no GPU, this
script compiles `model_step.class_jax_step` for a described H100 (XLA's deviceless compilation) and reads the
optimised HLO, one kernel at a time:
  * GEMM kernels (cuBLAS calls): FLOPs from their shapes and contracting dimensions;
  * cuDNN fused-attention kernels: FLOPs (4 b h q k d forward, 2.5x that backward);
  * every other kernel (fusions, copies, reductions): bytes read and written, counting whole operands and outputs.
It predicts the step as (GEMM + attention FLOPs) / (matmul efficiency x peak) + other bytes / bandwidth, and the
peak device memory as XLA's argument + temporary buffer sizes. The defaults are a measured H100 (bf16 matmul
peak 721 TFLOP/s, memory bandwidth 2.7 TB/s); the matmul efficiency, 0.70, is fitted to two measured einsum steps,
which the model then reproduces within 3-4% (bench/RESULTS.md, "Measurements the code relies on").

  pip install -e ".[cuda]"      # the plugin and its compiler; no GPU needed
  python bench/gpu_step_model.py --remat full --attention_kernel einsum cudnn --out bench/results/gpu_step_model.json

XLA 0.10's deviceless compilation cannot tile Triton GEMM fusions, so GEMMs compile to cuBLAS calls here
(`--xla_gpu_enable_triton_gemm=false`); the cost analysis of a measured H100 step suggests most of them are cuBLAS
calls on the device too.
"""

import argparse
import collections
import dataclasses
import math
import os
import re
import sys

import bench_utils
import model_step

# The H100 SXM (80 GB HBM3) as XLA's GPU compiler sees it: the device facts it tunes code generation to.
H100_TARGET_CONFIG = """
gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000 l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: 84978434048 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 } registers_per_core_limit: 65536 registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
runtime_version { major: 12 minor: 8 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""

ELEMENT_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
                 "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8}
ARRAY_TYPE = re.compile(r"\b(" + "|".join(ELEMENT_BYTES) + r")\[([0-9,]*)\]")
# Instructions that launch no kernel of their own.
NO_KERNEL = {"parameter", "get-tuple-element", "tuple", "bitcast", "constant", "after-all", "partition-id",
             "replica-id", "opt-barrier", "add-dependency"}
GEMM, ATTENTION = "GEMM (cuBLAS)", "attention (cuDNN)"


@dataclasses.dataclass
class Instruction:
    name: str
    type_text: str
    opcode: str
    operands: list[str]
    attributes: str


@dataclasses.dataclass
class KernelClass:
    kernels: int = 0
    bytes: int = 0
    flops: float = 0.0


def dims(type_text: str) -> list[list[int]]:
    """The dimensions of each array in an HLO type (a tuple gives several)."""
    return [[int(d) for d in shape.split(",") if d] for _, shape in ARRAY_TYPE.findall(type_text)]


def type_bytes(type_text: str) -> int:
    """Bytes of every array in an HLO type."""
    return sum(math.prod(int(d) for d in shape.split(",") if d) * ELEMENT_BYTES[element]
               for element, shape in ARRAY_TYPE.findall(type_text))


def _closing_parenthesis(text: str, depth: int) -> int:
    """The index in `text` where `depth` open parentheses are closed (len(text) if they never are)."""
    for index, char in enumerate(text):
        depth += (char == "(") - (char == ")")
        if depth == 0:
            return index
    return len(text)


def parse_instruction(line: str) -> Instruction | None:
    """One HLO instruction line (`%name = TYPE opcode(%a, %b), attributes`), or None for anything else."""
    match = re.match(r"^\s*(?:ROOT )?%(\S+) = (.*)$", line)
    if not match:
        return None
    name, rest = match.groups()
    if rest.startswith("("):  # a tuple type: up to its matching parenthesis
        end = _closing_parenthesis(rest, 0)
        type_text, rest = rest[:end + 1], rest[end + 2:]
    else:
        type_text, _, rest = rest.partition(" ")
    opcode, _, rest = rest.partition("(")
    end = _closing_parenthesis(rest, 1)
    return Instruction(name, type_text, opcode, re.findall(r"%([\w.\-]+)", rest[:end]), rest[end + 1:])


def computations(hlo_text: str) -> dict[str, list[Instruction]]:
    """Each computation's instructions; the entry computation is under "ENTRY"."""
    result, name = {}, None
    for line in hlo_text.splitlines():
        header = re.match(r"^(ENTRY )?%(\S+) .*\{$", line)
        if header:
            name = "ENTRY" if header.group(1) else header.group(2)
            result[name] = []
        elif line == "}":
            name = None
        elif name:
            instruction = parse_instruction(line)
            if instruction:
                result[name].append(instruction)
    return result


def _gemm_flops(instruction: Instruction, types: dict[str, str]) -> float:
    """2 x output elements x contracted size of a cuBLAS call (its first output is the product)."""
    lhs = dims(types[instruction.operands[0]])[0]
    contracting = re.search(r'"lhs_contracting_dimensions":\[([^\]]*)\]', instruction.attributes)
    contracted = math.prod(lhs[int(axis)] for axis in re.findall(r"\d+", contracting.group(1) if contracting else ""))
    return 2.0 * math.prod(dims(instruction.type_text)[0]) * contracted


def _attention_flops(instruction: Instruction, types: dict[str, str]) -> float:
    """4 b h q k d for a fused-attention forward call, 2.5x that backward (five products instead of two).

    The query and key lengths are the free dimensions of the call's query-key product: the one of its dimension
    numbers that contracts the head dimension (the last) of both operands, in the layout the first two operands have.
    """
    query, key = dims(types[instruction.operands[0]])[0], dims(types[instruction.operands[1]])[0]
    head_axis = str(len(query) - 1)
    for numbers in re.findall(r'dot_dimension_numbers": ?\{([^}]*)\}', instruction.attributes):
        fields = {name: re.findall(r"\d+", value) for name, value in
                  re.findall(r'"(\w+)": ?\[([^\]]*)\]', numbers)}
        if fields.get("lhs_contracting_dimensions") == fields.get("rhs_contracting_dimensions") == [head_axis]:
            key_axis = next(axis for axis in range(len(key))
                            if str(axis) not in fields["rhs_batch_dimensions"] + [head_axis])
            forward = 4.0 * math.prod(query) * key[key_axis]
            return forward * (2.5 if "Backward" in instruction.attributes else 1.0)
    raise ValueError(f"attention call %{instruction.name}: no query-key product in its backend config")


def kernel_class(instruction: Instruction, bodies: dict[str, list[Instruction]]) -> str:
    """What kind of kernel an entry instruction launches."""
    if instruction.opcode == "custom-call":
        target = re.search(r'custom_call_target="([^"]+)"', instruction.attributes)
        target = target.group(1) if target else ""
        if "fmha" in target:
            return ATTENTION
        if "matmul" in target or "gemm" in target:
            return GEMM
        return f"custom call {target}"
    if instruction.opcode == "fusion":
        called = re.search(r"calls=%([\w.\-]+)", instruction.attributes)
        opcodes = {i.opcode for i in bodies.get(called.group(1) if called else "", [])}
        if "dot" in opcodes:
            return "fusion with a product"
        return "reduction fusion" if "reduce" in opcodes else "elementwise fusion"
    return instruction.opcode


def account(hlo_text: str) -> dict[str, KernelClass]:
    """Kernels, bytes moved and FLOPs per kernel class of the entry computation of an optimised XLA:GPU module.

    Bytes count each kernel's whole operands and outputs, once: an upper bound where a kernel reads part of an
    operand, a lower bound where it re-reads one.
    """
    bodies = computations(hlo_text)
    types = {i.name: i.type_text for body in bodies.values() for i in body}
    if "ENTRY" not in bodies:
        raise ValueError("no ENTRY computation in the HLO text")
    classes: dict[str, KernelClass] = collections.defaultdict(KernelClass)
    for instruction in bodies["ENTRY"]:
        if instruction.opcode in NO_KERNEL:
            continue
        name = kernel_class(instruction, bodies)
        entry = classes[name]
        entry.kernels += 1
        entry.bytes += type_bytes(instruction.type_text) + sum(type_bytes(types.get(o, "")) for o in
                                                               instruction.operands)
        if name == GEMM:
            entry.flops += _gemm_flops(instruction, types)
        elif name == ATTENTION:
            entry.flops += _attention_flops(instruction, types)
    return dict(classes)


def predict_seconds(classes: dict[str, KernelClass], peak_flops: float, matmul_efficiency: float,
                    bandwidth: float) -> dict[str, float]:
    """The step's predicted time: matrix products at efficiency x peak, plus every other kernel at the bandwidth."""
    product_flops = sum(c.flops for name, c in classes.items() if name in (GEMM, ATTENTION))
    other_bytes = sum(c.bytes for name, c in classes.items() if name not in (GEMM, ATTENTION))
    products_s = product_flops / (matmul_efficiency * peak_flops)
    memory_s = other_bytes / bandwidth
    return {"products_s": products_s, "memory_bound_s": memory_s, "step_s": products_s + memory_s,
            "product_flops": product_flops, "other_bytes": other_bytes}


def compile_for_h100(args: argparse.Namespace, remat: str, attention_kernel: str
                     ) -> tuple[str, dict[str, float], float]:
    """Compiles the step for an H100 without a device: (optimised HLO text, memory sizes, analytic FLOPs)."""
    import flax.linen as nn
    import jax
    from jax.experimental import topologies

    shapes = model_step.Shapes(args.batch, args.passages, args.query_len, args.passage_len, args.answer_len)
    model, optimizer, train_step, input_shapes = model_step.class_jax_step(
        args.size, shapes, args.vocab, "bfloat16", remat, attention_kernel=attention_kernel)
    try:
        topology = topologies.get_topology_desc(platform="cuda", topology_name="", target_config=H100_TARGET_CONFIG,
                                                topology="1x1x1")
    except (NotImplementedError, RuntimeError) as error:
        raise SystemExit(f"gpu_step_model: no CUDA compiler here ({str(error).splitlines()[0]}); "
                         'install it with pip install -e ".[cuda]"') from error
    replicated = jax.sharding.NamedSharding(topologies.make_mesh(topology, (1,), ("data",)),
                                            jax.sharding.PartitionSpec())

    def abstract(tree):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), tree)

    params = jax.eval_shape(lambda: nn.unbox(model.get_initial_variables(jax.random.PRNGKey(0),
                                                                         input_shapes)["params"]))
    opt_state = jax.eval_shape(optimizer.init, params)
    batch = model_step._random_batch(shapes, args.vocab)  # pylint: disable=protected-access
    # This process's backend is the CPU, but the program is compiled for a GPU: the model's backend-dependent
    # choices (the attention kernel, the CPU-only Dense backward) must be made as they would be there.
    default_backend = jax.default_backend
    jax.default_backend = lambda: "gpu"
    try:
        compiled = jax.jit(train_step, donate_argnums=(0, 1)).lower(
            abstract(params), abstract(opt_state), abstract(batch)).compile()
    finally:
        jax.default_backend = default_backend
    memory = compiled.memory_analysis()
    sizes = {"argument_bytes": memory.argument_size_in_bytes, "temp_bytes": memory.temp_size_in_bytes,
             "output_bytes": memory.output_size_in_bytes, "alias_bytes": memory.alias_size_in_bytes}
    return compiled.as_text(), sizes, model.flops_per_step(input_shapes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(model_step.SIZES), default="large")
    parser.add_argument("--vocab", type=int, default=bench_utils.MT5_VOCAB)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--passages", type=int, default=16)
    parser.add_argument("--query_len", type=int, default=50)
    parser.add_argument("--passage_len", type=int, default=200)
    parser.add_argument("--answer_len", type=int, default=50)
    parser.add_argument("--remat", choices=["none", "full", "minimal"], nargs="+", default=["full", "minimal"])
    parser.add_argument("--attention_kernel", choices=["einsum", "xla", "cudnn"], nargs="+",
                        default=["einsum", "cudnn"])
    parser.add_argument("--peak_flops", type=float, default=721e12, help="bf16 matmul peak (a measured H100)")
    parser.add_argument("--bandwidth", type=float, default=2.7e12, help="bytes/s (a measured H100)")
    parser.add_argument("--matmul_efficiency", type=float, default=0.70,
                        help="share of the peak the step's matrix products reach (fitted to measured H100 steps)")
    parser.add_argument("--hlo_dir", default=None, help="also write each compiled step's HLO there")
    parser.add_argument("--out", default="bench/results/gpu_step_model.json")
    args = parser.parse_args(argv)

    result = {"size": args.size, "shapes": [args.batch, args.passages, args.query_len, args.passage_len,
                                             args.answer_len], "target": "H100 80GB HBM3 (described, no device)",
              "peak_flops": args.peak_flops, "bandwidth": args.bandwidth,
              "matmul_efficiency": args.matmul_efficiency, "variants": {}, **bench_utils.machine()}
    rows = []
    for remat in args.remat:
        for kernel in args.attention_kernel:
            name = f"remat {remat}, {kernel} attention"
            bench_utils.progress(f"compiling {name} for the H100")
            hlo_text, sizes, analytic_flops = compile_for_h100(args, remat, kernel)
            if args.hlo_dir:
                bench_utils.write_text(os.path.join(args.hlo_dir, f"{remat}_{kernel}.hlo.txt"), hlo_text)
            classes = account(hlo_text)
            prediction = predict_seconds(classes, args.peak_flops, args.matmul_efficiency, args.bandwidth)
            peak_gib = (sizes["argument_bytes"] + sizes["temp_bytes"]) / 2 ** 30
            mfu = analytic_flops / prediction["step_s"] / args.peak_flops
            result["variants"][name] = {**prediction, **sizes, "peak_gib": peak_gib, "analytic_flops": analytic_flops,
                                        "mfu": mfu, "kernels": {k: dataclasses.asdict(v) for k, v in classes.items()}}
            rows.append([name, f"{prediction['products_s'] * 1e3:.0f}", f"{prediction['memory_bound_s'] * 1e3:.0f}",
                         f"{prediction['step_s'] * 1e3:.0f}", f"{mfu:.1%}", f"{peak_gib:.1f}",
                         sum(c.kernels for c in classes.values())])
    print(f"mT5-{args.size} FiD step, bfloat16, {args.batch} x {args.passages} x ({args.query_len}+"
          f"{args.passage_len}) + {args.answer_len}, compiled for an H100 without one; products at "
          f"{args.matmul_efficiency:.0%} of {args.peak_flops / 1e12:.0f} TFLOP/s, other kernels at "
          f"{args.bandwidth / 1e12:.2f} TB/s\n")
    print(bench_utils.markdown_table(["variant", "products ms", "other kernels ms", "predicted step ms",
                                      "predicted MFU", "peak GiB", "kernels"], rows))
    print(f"wrote {bench_utils.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    # Set before JAX loads: the CUDA plugin must not look for a device, and (see the module docstring) GEMMs go to
    # cuBLAS. JAX's platform stays the CPU; the program is compiled for the described GPU.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_enable_triton_gemm=false").strip()
    sys.exit(main())
