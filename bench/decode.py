"""Benchmark: greedy FiD decoding (answers/s) — class_jax vs HF PyTorch `generate`, same shapes and dtype.

Float32 by default; `--dtype bfloat16` computes in bfloat16 over float32 weights on both sides.

B questions, each with k passages of (Lq + Lp) tokens; every answer is decoded for exactly `--steps` tokens (EOS
is disabled on both sides, so both do the same number of decoder steps whatever the random weights emit).

Two comparisons, both with the encoder output computed once per batch and the decoder's cross-attention keys and
values projected once into the cache (no recomputation at later steps):
  * end to end: class_jax `CLASSModel.predict_batch` (FiD encoder + greedy decoding, one jitted program) vs HF
    `MT5ForConditionalGeneration` used as FiD: its encoder over the B x k pairs, the outputs concatenated per
    question, then `generate(encoder_outputs=...)`;
  * decoding only: the FiD encoder outputs precomputed on both sides; class_jax runs the same cache creation and
    `decoding.greedy_decode` loop `predict_batch` runs, HF runs `generate` from the precomputed outputs.
The class_jax model is constructed with eos_id=-1 (never produced); HF gets `min_new_tokens = max_new_tokens`.
The four are timed in alternating blocks of back-to-back calls (see `bench_utils.in_blocks`); the fastest call of
each is reported.

  python bench/decode.py                                  # mT5-small, 4 questions x 8 passages, 20 steps
  python bench/decode.py --size base --passages 16 --out bench/results/decode_base.json
"""

import argparse
import pathlib
import sys

import numpy as np

import bench_utils


def _random_inputs(batch: int, passages: int, query_len: int, passage_len: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(0)
    passage_tokens = rng.randint(2, vocab, (batch, passages, passage_len)).astype(np.int32)
    passage_tokens[..., -1] = 1  # EOS-terminated passages
    return {"query_tokens": rng.randint(2, vocab, (batch, query_len)).astype(np.int32),
            "passage_tokens": passage_tokens}


def class_jax_runners(size: str, inputs: dict[str, np.ndarray], steps: int, vocab: int,
                      dtype: str = "float32") -> tuple[dict, dict]:
    """`predict_batch` end to end, and the decoding loop alone from a precomputed encoder output."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from class_jax.models import decoding
    from class_jax.models.class_model import CLASSModel
    from class_jax.models.config import ModelConfig
    from class_jax.runtime.partitioning import Partitioner

    emb, heads, head_dim, mlp, enc, dec = bench_utils.SIZES[size]
    config = ModelConfig(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                         num_encoder_layers=enc, num_decoder_layers=dec, dropout_rate=0.0, dtype=dtype)
    model = CLASSModel(config, max_decode_length=steps, num_beams=1, eos_id=-1)
    batch, passages, passage_len = inputs["passage_tokens"].shape
    shapes = CLASSModel.init_shapes()
    params = jax.jit(lambda r: nn.unbox(model.get_initial_variables(r, shapes)["params"]))(jax.random.PRNGKey(0))
    batch_arrays = {name: jnp.asarray(value) for name, value in inputs.items()}

    # The compiler options `Predictor` (`class-jax eval` / `infer`) and `class-jax ask` compile with.
    options = Partitioner().inference_compiler_options()
    predict = jax.jit(model.predict_batch, compiler_options=options)

    encode = jax.jit(lambda p, q, x: model.module.apply({"params": p}, q, x, method="encode_pairs"),
                     compiler_options=options)
    encoded = encode(params, batch_arrays["query_tokens"], batch_arrays["passage_tokens"])
    encoded, valid = jax.block_until_ready((encoded["encoded"], encoded["encoded_valid"]))

    def decode_only(p, encoded, valid):
        # What predict_batch does after encoding (greedy): create the cache (cross-attention K/V projected
        # once), then the while-loop of single-token decoder steps.
        dummy = jnp.zeros((encoded.shape[0], steps), jnp.int32)
        _, mutated = model.module.apply({"params": p}, encoded, valid, dummy, True, True, method="decode",
                                        mutable=["cache"])

        def step(cache, tokens):
            (logits, _), mutated = model.module.apply({"params": p, "cache": cache}, encoded, valid, tokens, True,
                                                      True, method="decode", mutable=["cache"])
            return logits[:, -1], mutated["cache"]

        return decoding.greedy_decode(step, mutated["cache"], encoded.shape[0], steps, eos_id=-1)

    decode = jax.jit(decode_only, compiler_options=options)
    tokens = np.asarray(predict(params, batch_arrays))
    same = bool(np.array_equal(tokens, np.asarray(decode(params, encoded, valid))))
    runners = {"end_to_end": lambda: predict(params, batch_arrays).block_until_ready(),
               "decode_only": lambda: decode(params, encoded, valid).block_until_ready()}
    return runners, {"answer_tokens": int((tokens != 0).sum()), "decode_only_matches_predict_batch": same}


def hf_runners(size: str, inputs: dict[str, np.ndarray], steps: int, vocab: int,
               dtype: str = "float32") -> tuple[dict, dict]:
    """HF FiD: encoder over the pairs + `generate`, and `generate` alone from precomputed outputs."""
    import torch
    import transformers
    from transformers.modeling_outputs import BaseModelOutput

    emb, heads, head_dim, mlp, enc, dec = bench_utils.SIZES[size]
    config = transformers.MT5Config(vocab_size=vocab, d_model=emb, num_heads=heads, d_kv=head_dim, d_ff=mlp,
                                    num_layers=enc, num_decoder_layers=dec, dropout_rate=0.0,
                                    feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    device = bench_utils.torch_device()
    with torch.device(device):  # initialised where it runs
        model = transformers.MT5ForConditionalGeneration(config).eval()
    batch, passages, passage_len = inputs["passage_tokens"].shape
    query_len = inputs["query_tokens"].shape[1]
    pair_len = query_len + passage_len
    pairs = np.concatenate([np.repeat(inputs["query_tokens"][:, None], passages, 1), inputs["passage_tokens"]], -1)
    input_ids = torch.tensor(pairs.reshape(-1, pair_len), dtype=torch.long, device=device)
    mask = (input_ids > 0).long()
    fid_mask = mask.reshape(batch, passages * pair_len)
    generation = dict(max_new_tokens=steps, min_new_tokens=steps, do_sample=False, num_beams=1, use_cache=True)

    def encode():
        hidden = model.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return BaseModelOutput(last_hidden_state=hidden.reshape(batch, passages * pair_len, -1))  # FiD

    def generate(encoder_outputs):
        out = model.generate(encoder_outputs=encoder_outputs, attention_mask=fid_mask, **generation)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    def context():
        return bench_utils.torch_autocast(device, dtype)

    with torch.inference_mode(), context():
        encoded = encode()
        tokens = generate(encoded)

    def end_to_end():
        with torch.inference_mode(), context():
            generate(encode())

    def decode_only():
        with torch.inference_mode(), context():
            generate(encoded)

    # generate returns the start token followed by the generated ones.
    return ({"end_to_end": end_to_end, "decode_only": decode_only},
            {"generated_length": int(tokens.shape[1] - 1), "threads": torch.get_num_threads()})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(bench_utils.SIZES), default="small")
    parser.add_argument("--vocab", type=int, default=bench_utils.MT5_VOCAB, help="mT5's vocabulary by default")
    parser.add_argument("--batch", type=int, default=4, help="questions per batch")
    parser.add_argument("--passages", type=int, default=8, help="k passages per question")
    parser.add_argument("--query_len", type=int, default=50)
    parser.add_argument("--passage_len", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20, help="decoded tokens per answer (EOS disabled)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="compute dtype of both sides (weights stay float32; torch.autocast on the HF side)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per block")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per implementation, alternating")
    parser.add_argument("--skip_hf", action="store_true", help="no torch/transformers comparison")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "decode.json"))
    args = parser.parse_args(argv)

    inputs = _random_inputs(args.batch, args.passages, args.query_len, args.passage_len, args.vocab)
    bench_utils.progress("building and compiling class_jax prediction and decoding")
    runners, ours = class_jax_runners(args.size, inputs, args.steps, args.vocab, args.dtype)
    steps = {("class_jax", kind): run for kind, run in runners.items()}
    result = {"size": args.size, "batch": args.batch, "passages": args.passages, "query_len": args.query_len,
              "passage_len": args.passage_len, "steps": args.steps, "vocab": args.vocab, "dtype": args.dtype,
              "class_jax": ours, **bench_utils.machine()}
    if not args.skip_hf:
        bench_utils.progress("building HF and generating once")
        runners, result["hf"] = hf_runners(args.size, inputs, args.steps, args.vocab, args.dtype)
        if result["hf"]["generated_length"] != args.steps:
            raise RuntimeError(f"HF generated {result['hf']['generated_length']} tokens, not {args.steps}")
        steps.update({("hf", kind): run for kind, run in runners.items()})
    bench_utils.progress("timing")
    for (side, kind), timing in bench_utils.in_blocks(steps, 1, args.repeats, args.rounds).items():
        result[side][kind] = timing
    rows = []
    for kind, label in (("end_to_end", "encoder + greedy decoding"), ("decode_only", "greedy decoding only")):
        seconds = ours[kind]["min_s"]
        ratio = "-"
        if "hf" in result:
            result[f"{kind}_speedup_vs_hf"] = result["hf"][kind]["min_s"] / seconds
            ratio = f"{result[f'{kind}_speedup_vs_hf']:.2f}x"
        rows.append([label, "class_jax (JAX)", f"{seconds:.3f}", f"{args.batch / seconds:.2f}", ratio])
        if "hf" in result:
            seconds = result["hf"][kind]["min_s"]
            rows.append([label, "HF `generate` (PyTorch)", f"{seconds:.3f}", f"{args.batch / seconds:.2f}", "1.00x"])

    print(f"\nGreedy FiD decoding, mT5-{args.size} shapes, {args.batch} questions x {args.passages} passages x "
          f"({args.query_len}+{args.passage_len}) tokens, {args.steps} answer tokens each, {args.dtype}, "
          f"{result['jax_device_kind']} ({result['cpus']} CPUs)\n")
    print(bench_utils.markdown_table(["what", "implementation", "s / batch", "answers/s", "vs HF"], rows))
    print(f"\nwrote {bench_utils.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    bench_utils.start_process()
    sys.exit(main())
