"""Benchmark: one FiD training step (forward + backward + AdamW update), class_jax vs HF PyTorch mT5.

Both sides run in this process on the same machine, same shapes and precision:
  * class_jax: `CLASSModel.loss_fn` (answer CE + retrieval KL) under one jitted step with buffer donation.
  * HF: `MT5ForConditionalGeneration` used as FiD (encoder over the k pairs of a question, decoder cross-attending
    over their concatenation), loss.backward(), torch.optim.AdamW.step().
`--dtype bfloat16` is mixed precision on both sides: float32 parameters and optimizer state, bfloat16 compute
(class_jax's `ModelConfig.dtype`; torch.autocast on the HF side). `--remat` rematerialises each layer on both sides
(class_jax's `ModelConfig.remat_policy`; HF's gradient checkpointing, which recomputes whole layers like "full").
Throughput is tokens/s over encoder + decoder tokens. MFU = analytic step FLOPs (recomputation not counted) / step
time / measured peak, where the peak is the best matmul rate in the run's dtype measured here (JAX and torch, square
matmuls, before and after). On a GPU the peak device memory of each side is reported too.

By default both models are built first and their steps timed in alternating blocks of back-to-back steps (see
`bench_utils.in_blocks`), so that load from other jobs on a shared machine hits both alike; the fastest step of
each is reported (the median is in the JSON too).
`--sequential` times one side at a time with only its model in memory (for sizes whose two copies do not fit).

  python bench/model_step.py                       # mT5-small shapes, FiD batch 1 x 4 passages
  python bench/model_step.py --size base --sequential --repeats 2 --out bench/results/model_step_base.json
  python bench/model_step.py --size large --dtype bfloat16 --remat full --batch 8 --passages 16   # GPU
  python bench/model_step.py --size large --dtype bfloat16 --remat full --batch 8 --passages 16 --skip_hf \
      --compare_attention_kernel cudnn     # the einsum attention against cuDNN's fused kernel, in one process
  python bench/model_step.py --stage clr_pt --batch 2 --out bench/results/model_step_clr_pt.json   # stage 1

`--stage clr_pt` times stage 1 (CLR-PT, class_jax/models/clr_pt.py) instead; there is no PyTorch peer for it. The
student `CLASSModel(config, LossConfig(stage="clr_pt"))` runs the doubled batch (every query's English and
target-language chunk, 2B FiD rows) through the library's own step (`train_step.make_train_step` +
`compile_train_step`, one device, state donated), timed in alternating blocks like the rows above:
  * the step with the frozen neural teacher (`--teacher`, token mode like gin/models/reatt_large.gin, random
    parameters, dropout 0; the teacher's parameters are the step's fourth argument): teacher + student;
  * the student-only step on the same shapes with BM25-style own-passage teacher_scores [B, k] and no teacher
    model; with-teacher / student-only is the teacher's cost;
  * the teacher's signals alone (`jax.jit(teacher_signals)`: its FiD forward with the decoder at the start token,
    retrieval vectors, ColBERT scores over the global batch, decoder passage distribution), against plain forwards
    of the same teacher network on the same tokens: the FiD forward with the decoder at the start token (logits
    only), the same with the decoder over a short answer (--answer_len), and the encoder-only FiD forward.
    teacher_signals / plain forward is what the teacher costs beyond a forward of its size.
FLOPs (the MFU basis, as above: analytic matmul FLOPs / time / measured peak): the student's stage-1 step counts
`flops_per_step` of a FiD batch of 2B rows (forward + backward, 3x forward) plus the in-batch retrieval scores of
both halves ([B, B*k] each, forward + backward); the teacher counts one forward (`flops_per_step` / 3 with its
decoder's length) plus the ColBERT max-sim products over [B, B*k] (its token read-out, layer B's Q/K projections
over the pairs, is not counted a second time: the layer computes the same products, and XLA's count of the compiled
teacher_signals stays within 1-2% of the analytic one).
"""

import argparse
import dataclasses
import functools
import os
import sys
from typing import Any, Callable

import numpy as np

import bench_utils
import profile_trace

SIZES = bench_utils.SIZES  # (emb, heads, head_dim, mlp, enc layers, dec layers)


@dataclasses.dataclass
class Shapes:
    batch: int
    passages: int
    query_len: int
    passage_len: int
    answer_len: int

    @property
    def tokens(self) -> int:
        return self.batch * (self.passages * (self.query_len + self.passage_len) + self.answer_len)


def class_jax_step(size: str, shapes: Shapes, vocab: int, dtype: str = "float32", remat: str = "none",
                   fused_adamw: bool = True, attention_kernel: str = "einsum"
                   ) -> tuple[Any, Any, Callable[..., Any], dict[str, tuple[int, ...]]]:
    """The class_jax FiD train step, before compilation: (model, optimizer, step function, input shapes).

    The optimizer is the trainer's AdamW (`optimizers.adamw`) as torch.optim.AdamW runs on the HF side: lr 1e-4,
    weight decay 0.01, no gradient clipping; `fused_adamw=False` runs optax's unfused chain instead.
    `attention_kernel` is `ModelConfig.attention_kernel`. The step maps (params, opt_state, batch) to
    (params, opt_state, loss).
    """
    import jax
    import optax
    from class_jax.models.class_model import CLASSModel
    from class_jax.models.config import ModelConfig
    from class_jax.trainer import optimizers

    emb, heads, head_dim, mlp, enc, dec = SIZES[size]
    config = ModelConfig(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                         num_encoder_layers=enc, num_decoder_layers=dec, dropout_rate=0.0, dtype=dtype,
                         remat_policy=remat, attention_kernel=attention_kernel)
    model = CLASSModel(config)
    input_shapes = {"query_tokens": (shapes.batch, shapes.query_len),
                    "passage_tokens": (shapes.batch, shapes.passages, shapes.passage_len),
                    "decoder_input_tokens": (shapes.batch, shapes.answer_len)}
    optimizer = optimizers.adamw(1e-4, weight_decay=0.01, grad_clip_norm=None, fused=fused_adamw).transform

    def train_step(params, opt_state, batch):
        (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, None)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return model, optimizer, train_step, input_shapes


def class_jax_runner(size: str, shapes: Shapes, vocab: int, dtype: str = "float32", remat: str = "none",
                     fused_adamw: bool = True, attention_kernel: str = "einsum", hlo_path: str | None = None
                     ) -> tuple[Callable[[], Any], dict[str, float]]:
    """The jitted, donating class_jax train step on one batch, and facts about it (FLOPs, XLA's count, params).

    The step is `class_jax_step`'s; `hlo_path`, where given, receives the compiled step's HLO.
    """
    import flax.linen as nn
    import jax
    from class_jax.runtime.partitioning import Partitioner

    model, optimizer, train_step, input_shapes = class_jax_step(size, shapes, vocab, dtype, remat, fused_adamw,
                                                                attention_kernel)
    params = nn.unbox(model.get_initial_variables(jax.random.PRNGKey(0), input_shapes)["params"])
    opt_state = optimizer.init(params)
    batch = jax.device_put(_random_batch(shapes, vocab))

    # Compiled once ahead of time (calling the jitted function would compile it a second time: minutes on a GPU),
    # with the trainer's compiler options.
    options = Partitioner().training_compiler_options()
    step = jax.jit(train_step, donate_argnums=(0, 1), compiler_options=options).lower(params, opt_state,
                                                                                        batch).compile()
    if hlo_path:
        bench_utils.write_text(hlo_path, step.as_text())
    state = {"params": params, "opt": opt_state}

    def run():
        state["params"], state["opt"], loss = step(state["params"], state["opt"], batch)
        loss.block_until_ready()

    # XLA's own count of the compiled step, as a cross-check of the analytic formula used for MFU.
    cost = step.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return run, {"flops": model.flops_per_step(input_shapes), "xla_flops": float(cost["flops"]),
                 "params": sum(x.size for x in jax.tree_util.tree_leaves(state["params"]))}


def hf_runner(size: str, shapes: Shapes, vocab: int, dtype: str = "float32",
              remat: str = "none") -> tuple[Callable[[], Any], dict[str, float]]:
    """The HF PyTorch FiD train step on the same batch (autocast for bfloat16, gradient checkpointing for remat)."""
    import torch
    import transformers

    emb, heads, head_dim, mlp, enc, dec = SIZES[size]
    config = transformers.MT5Config(vocab_size=vocab, d_model=emb, num_heads=heads, d_kv=head_dim, d_ff=mlp,
                                    num_layers=enc, num_decoder_layers=dec, dropout_rate=0.0,
                                    feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    device = bench_utils.torch_device()
    with torch.device(device):  # initialised where it runs (a large model's CPU initialisation takes minutes)
        model = transformers.MT5ForConditionalGeneration(config).train()
    if remat != "none":
        # transformers 5.24 renamed it (the old name warns); older releases, such as the GPU host's, have only the old.
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    batch = _random_batch(shapes, vocab)
    pair_len = shapes.query_len + shapes.passage_len
    pairs = np.concatenate([np.repeat(batch["query_tokens"][:, None], shapes.passages, 1),
                            batch["passage_tokens"]], -1).reshape(-1, pair_len)
    input_ids = torch.tensor(pairs, dtype=torch.long, device=device)
    attention = (input_ids > 0).long()
    labels = torch.tensor(batch["decoder_target_tokens"], dtype=torch.long, device=device)

    def run():
        optimizer.zero_grad(set_to_none=True)
        with bench_utils.torch_autocast(device, dtype):
            hidden = model.encoder(input_ids=input_ids, attention_mask=attention).last_hidden_state
            hidden = hidden.reshape(shapes.batch, shapes.passages * pair_len, -1)  # Fusion-in-Decoder
            out = model(encoder_outputs=(hidden,), attention_mask=attention.reshape(shapes.batch, -1),
                        labels=labels)
        out.loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return run, {"threads": torch.get_num_threads()}


def _time_sequentially(builders: dict, args: argparse.Namespace, result: dict, profiled: str) -> None:
    """--sequential: build, compile and time one step at a time (the `profiled` one also under the profiler)."""
    for name, build in builders.items():
        bench_utils.progress(f"building and compiling {name}")
        run, result[name] = build()
        result[name].update(bench_utils.timeit(run, 2, args.repeats * args.rounds))
        if name == profiled:
            _profile(run, args, result)
        del run


def _profile(run: Callable[[], Any], args: argparse.Namespace, result: dict[str, Any]) -> None:
    """With --profile_dir: traces class_jax steps and adds the time per XLA operation to the result."""
    if args.profile_dir:
        bench_utils.progress(f"profiling {args.profile_calls} class_jax steps")
        trace_file = profile_trace.trace(run, args.profile_dir, args.profile_calls)
        result["profile"] = profile_trace.summarize(trace_file, args.profile_calls)
        profile_trace.print_summary(result["profile"])


def _record_peak_memory(result: dict[str, Any]) -> None:
    """Adds each side's peak device memory ([bytes per device]) where the backend reports it (GPU, TPU).

    With several class_jax variants in one process the JAX figure is their common peak."""
    jax_peak = bench_utils.jax_peak_memory()
    for side in result:
        if side.startswith("class_jax") and jax_peak is not None:
            result[side]["peak_memory_bytes"] = jax_peak
    if "hf" in result and result.get("torch_device") == "cuda":
        import torch
        result["hf"]["peak_memory_bytes"] = [torch.cuda.max_memory_allocated()]


def _random_batch(shapes: Shapes, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(0)
    targets = rng.randint(2, vocab, (shapes.batch, shapes.answer_len)).astype(np.int32)
    return {
        "query_tokens": rng.randint(2, vocab, (shapes.batch, shapes.query_len)).astype(np.int32),
        "passage_tokens": rng.randint(2, vocab, (shapes.batch, shapes.passages, shapes.passage_len)).astype(np.int32),
        "decoder_target_tokens": targets,
        "decoder_input_tokens": np.concatenate([np.zeros((shapes.batch, 1), np.int32), targets[:, :-1]], 1),
        "decoder_loss_weights": np.ones((shapes.batch, shapes.answer_len), np.float32),
    }


# ------------------------------------------------------------------------------------------- stage 1 (CLR-PT)
# Teacher shapes for `--stage clr_pt`: (vocab, emb, heads, head_dim, mlp, enc layers, dec layers, MLP activations,
# tied logits, retrieval head). Token mode, retriever layer = enc // 2, as gin/models/reatt_large.gin.
TEACHERS = {
    # T5 v1.0 small (t5-small): ReLU MLP, d_ff 2048, 8 heads, 6+6 layers, logits tied to the embedding.
    "t5-small": (32128, 512, 8, 64, 2048, 6, 6, ("relu",), True, 6),
    # T5.1.1 small lm-adapt, the family of ReAtt's own teacher: gated GELU, d_ff 1024, 6 heads (head 5: there is no
    # head 6), 8+8 layers, untied logits.
    "t5-small-lm-adapt": (32128, 512, 6, 64, 1024, 8, 8, ("gelu", "linear"), False, 5),
    # ReAtt itself (neulab/reatt-large-nq, T5-large lm-adapt): gin/models/reatt_large.gin.
    "t5-large-lm-adapt": (32128, 1024, 16, 64, 2816, 24, 24, ("gelu", "linear"), False, 6),
    # For tests.
    "tiny": (32128, 64, 4, 16, 128, 4, 2, ("relu",), True, 2),
}


@dataclasses.dataclass
class TeacherShapes:
    """The teacher's token lengths: the same texts as the student's in its own vocabulary."""

    query_len: int
    passage_len: int


def _student_config(size: str, vocab: int, dtype: str, remat: str, attention_kernel: str):
    from class_jax.models.config import ModelConfig
    emb, heads, head_dim, mlp, enc, dec = SIZES[size]
    return ModelConfig(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                       num_encoder_layers=enc, num_decoder_layers=dec, dropout_rate=0.0, dtype=dtype,
                       remat_policy=remat, attention_kernel=attention_kernel)


def teacher_config(name: str, vocab: int | None = None, dtype: str = "float32", attention_kernel: str = "einsum"):
    """The ModelConfig of a `TEACHERS` entry: token mode (ReAtt), retriever layer = half the encoder, dropout 0."""
    from class_jax.models.config import ModelConfig
    default_vocab, emb, heads, head_dim, mlp, enc, dec, activations, tied, head = TEACHERS[name]
    return ModelConfig(vocab_size=vocab or default_vocab, emb_dim=emb, num_heads=heads, head_dim=head_dim,
                       mlp_dim=mlp, num_encoder_layers=enc, num_decoder_layers=dec, retriever_layer=enc // 2,
                       dropout_rate=0.0, mlp_activations=activations, logits_via_embedding=tied, dtype=dtype,
                       attention_kernel=attention_kernel, retrieval_mode="token", retrieval_head=head)


def _clr_pt_batch(shapes: Shapes, vocab: int, teacher_vocab: int, teacher_shapes: TeacherShapes,
                  neural_teacher: bool) -> dict[str, np.ndarray]:
    """A stage-1 batch: the FiD features, the English queries, the teacher's tokens and teacher_scores [B, k].

    With a neural teacher teacher_scores are zeros (what FiD files without BM25 hold; the step replaces them with
    the teacher's [B, B*k]); without one they are BM25-like own-passage scores, descending over the k passages.
    """
    batch = _random_batch(shapes, vocab)
    rng = np.random.RandomState(1)
    b, k = shapes.batch, shapes.passages
    batch["english_query_tokens"] = rng.randint(2, vocab, (b, shapes.query_len)).astype(np.int32)
    batch["teacher_query_tokens"] = rng.randint(2, teacher_vocab, (b, teacher_shapes.query_len)).astype(np.int32)
    batch["teacher_passage_tokens"] = rng.randint(2, teacher_vocab,
                                                  (b, k, teacher_shapes.passage_len)).astype(np.int32)
    bm25 = -np.sort(-rng.uniform(5.0, 25.0, (b, k)), axis=1)
    batch["teacher_scores"] = (np.zeros((b, k)) if neural_teacher else bm25).astype(np.float32)
    return batch


def clr_pt_flops(student, teacher, shapes: Shapes, teacher_shapes: TeacherShapes) -> dict[str, float]:
    """Analytic matmul FLOPs of the stage-1 rows (see the module docstring for what is counted)."""
    b, k = shapes.batch, shapes.passages
    doubled = {"query_tokens": (2 * b, shapes.query_len),
               "passage_tokens": (2 * b, k, shapes.passage_len),
               "decoder_input_tokens": (2 * b, shapes.answer_len)}
    cfg = student.config
    # S_en and S_xx, each [B, B*k] dot products of retrieval_dim vectors, forward + backward.
    in_batch_scores = 3.0 * 2 * (2 * b * b * k * cfg.retrieval_dim)
    student_step = student.flops_per_step(doubled) + in_batch_scores

    def teacher_forward(decoder_len: int) -> float:
        return teacher.flops_per_step({"query_tokens": (b, teacher_shapes.query_len),
                                       "passage_tokens": (b, k, teacher_shapes.passage_len),
                                       "decoder_input_tokens": (b, decoder_len)}) / 3.0

    tcfg = teacher.config
    maxsim = 2.0 * b * b * k * teacher_shapes.query_len * teacher_shapes.passage_len * tcfg.head_dim
    signals = teacher_forward(1) + maxsim
    # The encoder alone: the same count with no decoder layers and no answer.
    from class_jax.models.class_model import CLASSModel
    encoder_only = CLASSModel(dataclasses.replace(tcfg, num_decoder_layers=0)).flops_per_step(
        {"query_tokens": (b, teacher_shapes.query_len), "passage_tokens": (b, k, teacher_shapes.passage_len),
         "decoder_input_tokens": (b, 0)}) / 3.0
    return {"with_teacher": student_step + signals, "student_only": student_step, "teacher_signals": signals,
            "forward_start": teacher_forward(1), "forward_answer": teacher_forward(shapes.answer_len),
            "encoder_only": encoder_only}


class ClrPtBench:
    """Builds the stage-1 rows; the student's and the teacher's random parameters are drawn once and shared."""

    def __init__(self, args: argparse.Namespace, shapes: Shapes, teacher_shapes: TeacherShapes):
        import flax.linen as nn
        import jax
        from class_jax.models.class_model import CLASSModel, LossConfig
        from class_jax.runtime.partitioning import Partitioner

        self.args, self.shapes, self.teacher_shapes = args, shapes, teacher_shapes
        # One device, as the FiD rows: a measurement of what one chip does with the step (the tests fake 8 CPUs).
        self.partitioner = Partitioner(devices=jax.local_devices()[:1])
        self.student = CLASSModel(_student_config(args.size, args.vocab, args.dtype, args.remat,
                                                  args.attention_kernel), LossConfig(stage="clr_pt"))
        self.teacher = CLASSModel(teacher_config(args.teacher, args.teacher_vocab, args.dtype, args.attention_kernel))
        params = nn.unbox(self.teacher.get_initial_variables(jax.random.PRNGKey(1), self.teacher.init_shapes())[
            "params"])
        self.teacher_params = jax.device_put(params, self.partitioner.replicated)
        self.teacher_vocab = self.teacher.config.vocab_size
        self.flops = clr_pt_flops(self.student, self.teacher, shapes, teacher_shapes)

    def _placed(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import jax
        return {name: jax.device_put(value, self.partitioner.batch_sharding(value.ndim))
                for name, value in batch.items()}

    def step(self, with_teacher: bool) -> tuple[Callable[[], Any], dict[str, Any]]:
        """The library's stage-1 train step (make_train_step + compile_train_step), with or without the teacher."""
        import jax
        from class_jax.trainer import optimizers, train_state
        from class_jax.trainer import train_step as train_step_lib

        batch = _clr_pt_batch(self.shapes, self.args.vocab, self.teacher_vocab, self.teacher_shapes, with_teacher)
        optimizer = optimizers.adamw(1e-4, weight_decay=0.01, grad_clip_norm=None)
        input_shapes = {name: value.shape for name, value in batch.items()}
        layout = train_state.build_state_layout(self.student, optimizer.transform, self.partitioner, input_shapes,
                                                {name: value.dtype for name, value in batch.items()})
        state = train_state.init_train_state(self.student, optimizer.transform, self.partitioner, layout,
                                             jax.random.PRNGKey(0))
        rng = jax.device_put(jax.random.PRNGKey(2), self.partitioner.replicated)
        teacher = self.teacher if with_teacher else None
        teacher_params = self.teacher_params if with_teacher else None
        step_fn = train_step_lib.make_train_step(self.student, optimizer, teacher=teacher)
        spec = {name: (value.shape, value.dtype) for name, value in batch.items()}
        compiled = train_step_lib.compile_train_step(step_fn, self.partitioner, layout, spec, rng,
                                                     teacher_params=teacher_params)
        placed = self._placed(batch)
        extra = (teacher_params,) if with_teacher else ()
        holder = {"state": state}

        def run():
            holder["state"], metrics = compiled(holder["state"], placed, rng, *extra)
            metrics["loss"].block_until_ready()

        name = "with_teacher" if with_teacher else "student_only"
        return run, {"flops": self.flops[name], "xla_flops": train_step_lib.compiled_flops(compiled),
                     "params": sum(x.size for x in jax.tree_util.tree_leaves(state.params))}

    def forward(self, kind: str) -> tuple[Callable[[], Any], dict[str, Any]]:
        """A forward-only jitted function of the teacher on the batch's teacher tokens (inference compiler options).

        kind: "teacher_signals", "forward_start" (FiD forward, decoder at the start token, logits), "forward_answer"
        (decoder over an --answer_len answer) or "encoder_only" (the FiD encoder over the pairs).
        """
        import jax
        import jax.numpy as jnp
        from class_jax.models import teacher as teacher_lib
        from class_jax.trainer import train_step as train_step_lib

        batch = _clr_pt_batch(self.shapes, self.args.vocab, self.teacher_vocab, self.teacher_shapes, True)
        queries, passages = batch["teacher_query_tokens"], batch["teacher_passage_tokens"]
        module = self.teacher.module
        if kind == "teacher_signals":
            def fn(params, q, p):
                return teacher_lib.teacher_signals(self.teacher, params, {"teacher_query_tokens": q,
                                                                         "teacher_passage_tokens": p})
        elif kind == "encoder_only":
            def fn(params, q, p):
                return module.apply({"params": params}, q, p, True, method="encode_pairs")["encoded"]
        else:
            length = 1 if kind == "forward_start" else self.shapes.answer_len
            answer = np.random.RandomState(2).randint(2, self.teacher_vocab, (self.shapes.batch, length))
            answer[:, 0] = 0  # shifted right: starts with the start token

            def fn(params, q, p):
                return module.apply({"params": params}, q, p, jnp.asarray(answer, jnp.int32),
                                    deterministic=True)["logits"]
        args = (self.teacher_params, *self._placed({"q": queries, "p": passages}).values())
        compiled = jax.jit(fn, compiler_options=self.partitioner.inference_compiler_options()).lower(*args).compile()

        def run():
            jax.block_until_ready(compiled(*args))

        return run, {"flops": self.flops[kind], "xla_flops": train_step_lib.compiled_flops(compiled)}


CLR_PT_LABELS = {
    "with_teacher": "stage-1 step, teacher + student",
    "student_only": "stage-1 step, student only (BM25 teacher_scores)",
    "teacher_signals": "teacher_signals (jit), teacher forward alone",
    "forward_start": "plain FiD forward, decoder at the start token",
    "forward_answer": "plain FiD forward, decoder over the answer",
    "encoder_only": "encoder-only FiD forward",
}
# Each row's ratio is against this row (None: the reference itself).
CLR_PT_REFERENCE = {"with_teacher": "student_only", "student_only": None, "teacher_signals": "forward_start",
                    "forward_start": None, "forward_answer": "forward_start", "encoder_only": "forward_start"}
CLR_PT_REFERENCE_NAMES = {"student_only": "the student-only step", "forward_start": "the plain forward"}


def run_clr_pt(args: argparse.Namespace, shapes: Shapes) -> int:
    """`--stage clr_pt`: the stage-1 rows (module docstring), timed as the FiD rows, table and JSON."""
    teacher_shapes = TeacherShapes(args.teacher_query_len or shapes.query_len,
                                   args.teacher_passage_len or shapes.passage_len)
    peak = bench_utils.measure_peak_flops(dtype=args.dtype)
    bench_utils.progress(f"building the mT5-{args.size} student and the {args.teacher} teacher")
    bench = ClrPtBench(args, shapes, teacher_shapes)
    builders = {"with_teacher": functools.partial(bench.step, True),
                "student_only": functools.partial(bench.step, False),
                **{kind: functools.partial(bench.forward, kind)
                   for kind in ("teacher_signals", "forward_start", "forward_answer", "encoder_only")}}
    teacher_cfg = bench.teacher.config
    result = {"stage": "clr_pt", "size": args.size, "shapes": dataclasses.asdict(shapes),
              "teacher": args.teacher, "teacher_config": {**dataclasses.asdict(teacher_cfg),
                                                          "mlp_activations": list(teacher_cfg.mlp_activations)},
              "teacher_shapes": dataclasses.asdict(teacher_shapes), "student_rows": 2 * shapes.batch,
              "vocab": args.vocab, "dtype": args.dtype, "remat": args.remat, "attention_kernel": args.attention_kernel,
              "timing": "sequential" if args.sequential else f"{args.rounds} alternating blocks",
              **bench_utils.machine()}
    if args.sequential:
        _time_sequentially(builders, args, result, profiled="with_teacher")
    else:
        steps = {}
        for name, build in builders.items():
            bench_utils.progress(f"building and compiling {name}")
            steps[name], result[name] = build()
        bench_utils.progress("timing")
        for name, timing in bench_utils.in_blocks(steps, 2, args.repeats, args.rounds).items():
            result[name].update(timing)
        _profile(steps["with_teacher"], args, result)
        del steps
    jax_peak = bench_utils.jax_peak_memory()
    if jax_peak is not None:
        result["peak_memory_bytes"] = jax_peak
    peak = bench_utils.best_peak(peak, bench_utils.measure_peak_flops(dtype=args.dtype))
    best_peak = max(peak.values())
    result["peak_flops"] = peak
    for name in builders:
        row = result[name]
        row["seconds"] = row["min_s"]
        row["mfu"] = row["flops"] / row["seconds"] / best_peak
        reference = CLR_PT_REFERENCE[name]
        if reference:
            row["ratio_to_" + reference] = row["seconds"] / result[reference]["min_s"]
    result["teacher_cost"] = result["with_teacher"]["ratio_to_student_only"]
    result["teacher_signals_over_plain_forward"] = result["teacher_signals"]["ratio_to_forward_start"]
    result["mfu"] = result["with_teacher"]["mfu"]
    result["load_avg_1m_after"] = os.getloadavg()[0]

    emb, heads, head_dim, mlp, enc, dec = SIZES[args.size]
    activations = "+".join(teacher_cfg.mlp_activations)
    print(f"Stage-1 (CLR-PT) train step, mT5-{args.size} student ({enc}+{dec} layers, vocab {args.vocab}) on "
          f"{2 * shapes.batch} doubled rows = batch {shapes.batch} x 2 (English + target) x {shapes.passages} passages "
          f"x ({shapes.query_len}+{shapes.passage_len}) + answer {shapes.answer_len}; teacher {args.teacher} "
          f"({teacher_cfg.num_encoder_layers}+{teacher_cfg.num_decoder_layers} layers, d_model {teacher_cfg.emb_dim}, "
          f"{teacher_cfg.num_heads} heads x {teacher_cfg.head_dim}, d_ff {teacher_cfg.mlp_dim} {activations}, vocab "
          f"{teacher_cfg.vocab_size}, token mode layer {teacher_cfg.retriever_layer_index} head "
          f"{teacher_cfg.retrieval_head}, random frozen parameters) on batch {shapes.batch} x {shapes.passages} x "
          f"({teacher_shapes.query_len}+{teacher_shapes.passage_len}); {args.dtype}, remat {args.remat}, "
          f"{result['jax_device_kind']} ({os.cpu_count()} CPUs), {result['timing']} timing, fastest of "
          f"{args.repeats * args.rounds}")
    print("measured matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items()))
    counts = (f"{name} {result[name]['flops'] / 1e9:.1f} / {result[name]['xla_flops'] / 1e9:.1f}" for name in builders)
    print("FLOPs: analytic (used for MFU) / XLA cost analysis, G: " + ", ".join(counts) + "\n")
    rows = []
    for name, label in CLR_PT_LABELS.items():
        row = result[name]
        reference = CLR_PT_REFERENCE[name]
        ratio = "reference" if reference is None else (
            f"{row['ratio_to_' + reference]:.2f}x {CLR_PT_REFERENCE_NAMES[reference]}")
        rows.append([label, f"{row['seconds']:.3f}", f"{row['median_s']:.3f}", f"{row['flops'] / 1e9:.3g}",
                     f"{row['mfu']:.1%}", ratio])
    print(bench_utils.markdown_table(["measurement", "best s", "median s", "GFLOP", "MFU", "time ratio"], rows))
    print(f"\nteacher's cost: the step with the teacher takes {result['teacher_cost']:.2f}x the student-only step; "
          f"teacher_signals takes {result['teacher_signals_over_plain_forward']:.2f}x a plain forward of the "
          "teacher's size on the same tokens")
    print(f"wrote {bench_utils.write_json(args.out, result)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--vocab", type=int, default=250112, help="mT5's vocabulary by default")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--passages", type=int, default=4)
    parser.add_argument("--query_len", type=int, default=50)
    parser.add_argument("--passage_len", type=int, default=200)
    parser.add_argument("--answer_len", type=int, default=50)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="compute dtype of both sides (parameters and optimizer state stay float32)")
    parser.add_argument("--remat", choices=["none", "full", "minimal"], default="none",
                        help="class_jax remat policy; any but none turns on HF gradient checkpointing")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per block")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per implementation, alternating")
    parser.add_argument("--skip_hf", action="store_true", help="no torch/transformers comparison")
    parser.add_argument("--compare_optax_adamw", action="store_true",
                        help="also time the class_jax step with optax's unfused AdamW chain")
    parser.add_argument("--attention_kernel", choices=["einsum", "xla", "cudnn"], default="einsum",
                        help="class_jax's ModelConfig.attention_kernel")
    parser.add_argument("--compare_attention_kernel", choices=["einsum", "xla", "cudnn"], default=None,
                        help="also time the class_jax step with this attention kernel")
    parser.add_argument("--profile_dir", default=None,
                        help="also trace --profile_calls class_jax steps there and report time per XLA operation "
                             "(the compiled HLO, which says what each fusion computes, is written beside it)")
    parser.add_argument("--profile_calls", type=int, default=2)
    parser.add_argument("--sequential", action="store_true",
                        help="time one side at a time, with only its model in memory")
    parser.add_argument("--stage", choices=["finetune", "clr_pt"], default="finetune",
                        help="finetune: the FiD step against HF; clr_pt: the stage-1 rows (module docstring)")
    parser.add_argument("--teacher", choices=sorted(TEACHERS), default="t5-small",
                        help="--stage clr_pt: the neural teacher's shape (token mode, random frozen parameters)")
    parser.add_argument("--teacher_vocab", type=int, default=None, help="the teacher's vocabulary (T5's 32128)")
    parser.add_argument("--teacher_query_len", type=int, default=None, help="default: --query_len")
    parser.add_argument("--teacher_passage_len", type=int, default=None, help="default: --passage_len")
    parser.add_argument("--out", default="bench/results/model_step.json")
    args = parser.parse_args(argv)
    shapes = Shapes(args.batch, args.passages, args.query_len, args.passage_len, args.answer_len)
    if args.stage == "clr_pt":
        return run_clr_pt(args, shapes)

    peak = bench_utils.measure_peak_flops(dtype=args.dtype)
    hlo_path = os.path.join(args.profile_dir, "class_jax_step.hlo.txt") if args.profile_dir else None
    builders = {"class_jax": functools.partial(class_jax_runner, attention_kernel=args.attention_kernel,
                                               hlo_path=hlo_path)}
    labels = {"class_jax": f"class_jax (JAX, jit + donation), {args.attention_kernel} attention"}
    if args.compare_attention_kernel:
        side = f"class_jax_{args.compare_attention_kernel}_attention"
        builders[side] = functools.partial(class_jax_runner, attention_kernel=args.compare_attention_kernel)
        labels[side] = f"class_jax, {args.compare_attention_kernel} attention"
    labels.update(class_jax_optax_adamw="class_jax, optax's unfused AdamW", hf="HF transformers (PyTorch)")
    if args.compare_optax_adamw:
        builders["class_jax_optax_adamw"] = functools.partial(class_jax_runner, fused_adamw=False)
    if not args.skip_hf:
        builders["hf"] = hf_runner
    builders = {name: functools.partial(build, dtype=args.dtype, remat=args.remat) for name, build in builders.items()}
    result = {"size": args.size, "shapes": dataclasses.asdict(shapes), "tokens_per_step": shapes.tokens,
              "vocab": args.vocab, "dtype": args.dtype, "remat": args.remat, "attention_kernel": args.attention_kernel,
              "timing": "sequential" if args.sequential else f"{args.rounds} alternating blocks",
              **bench_utils.machine()}
    if args.sequential:
        _time_sequentially({name: functools.partial(build, args.size, shapes, args.vocab)
                            for name, build in builders.items()}, args, result, profiled="class_jax")
    else:
        steps = {}
        for name, build in builders.items():
            bench_utils.progress(f"building and compiling {name}")
            try:
                steps[name], result[name] = build(args.size, shapes, args.vocab)
            except Exception as error:  # pylint: disable=broad-except
                if not name.endswith("_attention"):
                    raise
                # A fused kernel that refuses these shapes on this device must not cost the other figures.
                result[name] = {"error": f"{type(error).__name__}: {error}"}
                bench_utils.progress(f"{name} failed to build: {result[name]['error'][:300]}")
        bench_utils.progress("timing")
        for name, timing in bench_utils.in_blocks(steps, 2, args.repeats, args.rounds).items():
            result[name].update(timing)
        _profile(steps["class_jax"], args, result)
        del steps
    _record_peak_memory(result)
    ours = result["class_jax"]
    for side in builders:
        if "error" not in result[side]:
            result[side]["step_s"] = result[side]["min_s"]
    if "hf" in result:
        result["speedup_vs_hf"] = result["hf"]["step_s"] / ours["step_s"]
    # The peak is measured before and after the runs and the best kept: on a shared machine a single
    # measurement taken during a burst of other work would understate it and inflate MFU.
    peak = bench_utils.best_peak(peak, bench_utils.measure_peak_flops(dtype=args.dtype))
    best_peak = max(peak.values())
    result["peak_flops"] = peak
    result["mfu"] = ours["flops"] / ours["step_s"] / best_peak

    print(f"FiD train step, mT5-{args.size} shapes, batch {shapes.batch} x {shapes.passages} passages x "
          f"({shapes.query_len}+{shapes.passage_len}) + answer {shapes.answer_len}, {args.dtype}, remat {args.remat}, "
          f"{result['jax_device_kind']} ({os.cpu_count()} CPUs), {result['timing']} timing, fastest of "
          f"{args.repeats * args.rounds}")
    print("measured matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items()))
    print(f"step FLOPs: analytic {ours['flops'] / 1e9:.1f} G (used for MFU), XLA cost analysis "
          f"{ours['xla_flops'] / 1e9:.1f} G\n")
    rows = []
    for side, label in labels.items():
        if side in result and "error" not in result[side]:
            seconds = result[side]["step_s"]
            ratio = f"{result['hf']['step_s'] / seconds:.2f}x" if "hf" in result else "-"
            memory = result[side].get("peak_memory_bytes")
            rows.append([label, f"{seconds:.3f}", f"{shapes.tokens / seconds:.0f}", ratio,
                         f"{ours['flops'] / seconds / best_peak:.1%}",
                         "-" if memory is None else " / ".join(f"{b / 2 ** 30:.1f}" for b in memory)])
    print(bench_utils.markdown_table(["implementation", "step s", "tokens/s", "vs HF", "MFU", "peak GiB per device"],
                                     rows))
    for side in labels:
        if "error" in result.get(side, {}):
            print(f"{labels[side]}: not built ({result[side]['error'][:300]})")
    print(f"wrote {bench_utils.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    bench_utils.start_process()
    sys.exit(main())
