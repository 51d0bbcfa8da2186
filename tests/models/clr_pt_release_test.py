"""Stage 1 computes the release's loss terms and gradients (docs/method.md#stage-1-clr-pt).

A tiny random student in the release's checkpoint format (HF mT5 + query_proj / passage_proj / layer_norm at block
B) and a tiny random ReAtt-format teacher in token mode, with its own (T5-sized) vocabulary, run one stage-1 step on
2 queries x 3 passages through `train_step.loss_and_grads`, the function the train step calls. The reference is
written here in torch from the release's `ReaderDistillTrainer.compute_loss`: the same chunk loop, `kl_div(...,
'batchmean')` calls, ColBERT sum of max-sims, CE per chunk and detach points. It takes the models' primitive
outputs, computed one query (or passage) at a time by the model's plain forward pass (not by class_jax's stage-1
code), and its gradients reach the parameters through those outputs' VJP.
"""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from class_jax.checkpoints import param_layout
from class_jax.checkpoints.hf import reader
from class_jax.models.class_model import CLASSModel, LossConfig
from class_jax.trainer import train_step

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "checkpoints"))
import checkpoint_fixtures as fx  # pylint: disable=wrong-import-position

_tokens = fx.random_token_rows

NUM_QUERIES, K, QUERY_LEN, PASSAGE_LEN, ANSWER_LEN = 2, 3, 6, 7, 4
ALPHA = 8.0
CHECKED = ("token_embedder/embedding", "encoder/retriever/query_proj/kernel", "encoder/retriever/passage_proj/kernel",
           "encoder/retriever/layer_norm/scale", "decoder/logits_dense/kernel")


@pytest.fixture(name="models", scope="module")
def fixture_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    fx.save_hf(fx.build_hf_model(dict(fx.MT5_GATED, num_layers=3), seed=3), root / "student")
    fx.make_class_checkpoint(root / "student", block=1, n_passages=K)
    fx.save_hf(fx.build_hf_model(fx.T5_V10_RELU_TIED, seed=4), root / "teacher")
    fx.make_reatt_checkpoint(root / "teacher", layer=1, head=2)
    student, teacher = reader.load_hf_checkpoint(root / "student"), reader.load_hf_checkpoint(root / "teacher")
    assert teacher.config.retrieval_mode == "token" and student.config.retrieval_mode == "pooled"
    return (CLASSModel(student.config, LossConfig(stage="clr_pt", alpha=ALPHA)),
            jax.tree_util.tree_map(jnp.asarray, param_layout.unflatten(student.params)),
            CLASSModel(teacher.config), jax.tree_util.tree_map(jnp.asarray, param_layout.unflatten(teacher.params)))


def _batch(student_vocab: int, teacher_vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape_q, shape_p = (NUM_QUERIES, QUERY_LEN), (NUM_QUERIES, K, PASSAGE_LEN)
    targets = _tokens(rng, student_vocab, (NUM_QUERIES, ANSWER_LEN), np.array([4, 2]), eos=True)
    return {
        "query_tokens": _tokens(rng, student_vocab, shape_q, np.array([6, 3]), eos=False),
        "english_query_tokens": _tokens(rng, student_vocab, shape_q, np.array([4, 5]), eos=False),
        "passage_tokens": _tokens(rng, student_vocab, shape_p, rng.integers(3, PASSAGE_LEN + 1, shape_p[:2]), True),
        "decoder_target_tokens": targets,
        "decoder_input_tokens": np.concatenate([np.zeros((NUM_QUERIES, 1), np.int32), targets[:, :-1]], 1),
        "decoder_loss_weights": (targets > 0).astype(np.int32),
        "teacher_query_tokens": _tokens(rng, teacher_vocab, shape_q, np.array([5, 6]), eos=False),
        "teacher_passage_tokens": _tokens(rng, teacher_vocab, shape_p, rng.integers(3, PASSAGE_LEN + 1, shape_p[:2]),
                                          True),
        "teacher_scores": np.zeros((NUM_QUERIES, K), np.float32),  # what the FiD files hold without BM25
    }


def _primitives(student: CLASSModel, params, batch) -> dict[str, jax.Array]:
    """The student's outputs the release's loss reads, one query or passage at a time by the plain forward pass."""
    rows = range(NUM_QUERIES)
    encode = student.encode_for_retrieval
    out = {
        "query_en": jnp.stack([encode(params, batch["english_query_tokens"][i:i + 1], True)["vectors"][0]
                               for i in rows]),
        "query_xx": jnp.stack([encode(params, batch["query_tokens"][i:i + 1], True)["vectors"][0] for i in rows]),
        "passages": jnp.stack([encode(params, batch["passage_tokens"][i, j][None], False)["vectors"][0]
                               for i in rows for j in range(K)]),
    }
    for name, queries in (("en", batch["english_query_tokens"]), ("xx", batch["query_tokens"])):
        logits, cross = [], []
        for i in rows:
            chunk = {"passage_tokens": batch["passage_tokens"][i:i + 1],
                     "decoder_input_tokens": batch["decoder_input_tokens"][i:i + 1]}
            forward = student._forward(params, queries[i:i + 1], chunk, None)  # pylint: disable=protected-access
            logits.append(forward["logits"][0])
            cross.append(forward["cross_probs"][0, :, 0])  # last decoder layer, first position: [heads, enc_len]
        out[f"logits_{name}"], out[f"cross_{name}"] = jnp.stack(logits), jnp.stack(cross)
    return out


def _teacher_primitives(teacher: CLASSModel, params, batch) -> dict[str, np.ndarray]:
    rows = range(NUM_QUERIES)
    queries = [teacher.encode_for_retrieval(params, batch["teacher_query_tokens"][i:i + 1], True) for i in rows]
    passages = [teacher.encode_for_retrieval(params, batch["teacher_passage_tokens"][i, j][None], False)
                for i in rows for j in range(K)]
    cross = [teacher._forward(params, batch["teacher_query_tokens"][i:i + 1],  # pylint: disable=protected-access
                              {"passage_tokens": batch["teacher_passage_tokens"][i:i + 1],
                               "decoder_input_tokens": np.zeros((1, 1), np.int32)}, None)["cross_probs"][0, :, 0]
             for i in rows]
    return {"query": np.stack([np.asarray(q["tokens"][0]) for q in queries]),
            "query_mask": np.stack([np.asarray(q["valid"][0]) for q in queries]),
            "passage": np.stack([np.asarray(p["tokens"][0]) for p in passages]),
            "passage_mask": np.stack([np.asarray(p["valid"][0]) for p in passages]),
            "cross": np.stack([np.asarray(c) for c in cross])}


def _colbert(query, passage, query_mask, passage_mask):
    """The release's compute_colbert_scores: sum over query tokens of the max over passage tokens, unnormalised."""
    scores = query.unsqueeze(1) @ passage.unsqueeze(0).transpose(2, 3)  # [nq, np, Lq, Lp]
    scores = scores.masked_fill(~passage_mask[None, :, None].bool(), -1e9).max(dim=-1).values
    return scores.masked_fill(~query_mask[:, None].bool(), 0.0).sum(dim=-1)


def _decoder_scores(cross):
    """The release's decoder passage distribution from cross_attentions[-1][:, :, 0]."""
    heads = cross.shape[-2]
    return cross.reshape(cross.shape[0], heads, K, -1).sum(-1).mean(1)


def _release_loss(prims: dict[str, torch.Tensor], teacher: dict[str, np.ndarray], batch) -> dict[str, torch.Tensor]:
    """ReaderDistillTrainer.compute_loss in torch, over the primitives (single process, no GradCache needed)."""
    t = {name: torch.from_numpy(value) for name, value in teacher.items()}
    teacher_scores = _colbert(t["query"], t["passage"], t["query_mask"], t["passage_mask"])
    teacher_decoder = _decoder_scores(t["cross"])
    retriever_scores = prims["query_en"] @ prims["passages"].T
    cs_scores = prims["query_xx"] @ prims["passages"].T
    target = torch.softmax(teacher_scores, dim=-1)
    terms = {"kl_teacher_en": F.kl_div(torch.log_softmax(retriever_scores, -1), target, reduction="batchmean"),
             "kl_teacher_xx": F.kl_div(torch.log_softmax(cs_scores, -1), target, reduction="batchmean"),
             "kl_en_xx": F.kl_div(torch.log_softmax(cs_scores, -1), torch.softmax(retriever_scores.detach(), -1),
                                  reduction="batchmean")}
    retriever_loss = ALPHA * (terms["kl_teacher_en"] + terms["kl_teacher_xx"] + terms["kl_en_xx"])
    labels = torch.from_numpy(np.where(batch["decoder_loss_weights"] > 0, batch["decoder_target_tokens"], -100)
                              .astype(np.int64))
    chunks = 2 * NUM_QUERIES
    logits = torch.cat([prims["logits_en"], prims["logits_xx"]])  # [English..., target...], as the release
    cross = torch.cat([prims["cross_en"], prims["cross_xx"]])
    teacher_decoder = torch.cat([teacher_decoder, teacher_decoder])
    ce_sum, decoder_sum, alignment_sum, english_logits = 0.0, 0.0, 0.0, []
    for idx in range(chunks):
        chunk_labels = labels[idx % NUM_QUERIES]
        ce_sum = ce_sum + F.cross_entropy(logits[idx], chunk_labels, ignore_index=-100) / chunks
        if idx < NUM_QUERIES:
            english_logits.append(logits[idx].detach())
        else:
            mask = chunk_labels != -100
            alignment_sum = alignment_sum + F.kl_div(
                torch.log_softmax(logits[idx][mask], -1), torch.softmax(english_logits[idx - NUM_QUERIES], -1)[mask],
                reduction="batchmean") / NUM_QUERIES
        decoder = _decoder_scores(cross[idx][None])
        decoder_sum = decoder_sum + F.kl_div(decoder.log(), teacher_decoder[idx], reduction="batchmean") / chunks
    terms.update(ce=ce_sum, kl_decoder_teacher=decoder_sum, kl_answer_alignment=alignment_sum)
    terms["total"] = retriever_loss + ce_sum + decoder_sum + alignment_sum
    return terms


def _reference(models, batch):
    student, params, teacher, teacher_params = models
    teacher_prims = _teacher_primitives(teacher, teacher_params, batch)
    prims, vjp = jax.vjp(lambda p: _primitives(student, p, batch), params)
    torch_prims = {name: torch.tensor(np.asarray(value), dtype=torch.float64, requires_grad=True)
                   for name, value in prims.items()}
    terms = _release_loss(torch_prims, {n: v.astype(np.float64) if v.dtype.kind == "f" else v
                                        for n, v in teacher_prims.items()}, batch)
    terms["total"].backward()
    cotangents = {name: jnp.asarray(tensor.grad.numpy(), jnp.float32) for name, tensor in torch_prims.items()}
    (grads,) = vjp(cotangents)
    return {name: float(value.detach()) for name, value in terms.items()}, param_layout.flatten(jax.device_get(grads))


# M = 2 (GradCache) in the default run; the one-pass loss is also checked against M = 2 by grad_cache_test.py.
@pytest.mark.parametrize("num_microbatches", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_stage1_terms_and_gradients_equal_the_release_formulas(models, num_microbatches):
    student, params, teacher, teacher_params = models
    batch = _batch(student.config.vocab_size, teacher.config.vocab_size)
    expected_terms, expected_grads = _reference(models, batch)
    grads, metrics = jax.jit(lambda p, tp, b: train_step.loss_and_grads(
        student, p, b, None, num_microbatches=num_microbatches, teacher=teacher, teacher_params=tp))(
            params, teacher_params, batch)
    for name in ("kl_teacher_en", "kl_teacher_xx", "kl_en_xx", "ce", "kl_decoder_teacher", "kl_answer_alignment"):
        assert expected_terms[name] > 1e-3, name  # every term is exercised
        np.testing.assert_allclose(float(metrics[f"loss/{name}"]), expected_terms[name], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(float(metrics["loss"]), expected_terms["total"], rtol=1e-5)
    ours = param_layout.flatten(jax.device_get(grads))
    assert set(ours) == set(expected_grads)
    for name in ours:
        scale = np.abs(expected_grads[name]).max()
        np.testing.assert_allclose(ours[name], expected_grads[name], atol=1e-5 * max(scale, 1e-3), rtol=0,
                                   err_msg=name)
    for name in CHECKED:
        assert np.abs(expected_grads[name]).max() > 1e-4, name
    assert np.abs(ours["encoder/retriever/query_proj/kernel"]).max() > 0
