"""Tiny random Hugging Face T5 / mT5 checkpoints (plain, CLASS-format, ReAtt-format) written for the tests, with the
SentencePiece models and random token rows the stage-1 tests feed them.

Every parameter is randomised, norms included (HF initialises them to 1, which would hide a swapped norm), and an
untied `lm_head` gets its own values, so a mapping mistake anywhere shows up as a parity failure.
"""

import io
import json
import pathlib
from typing import Any

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

# Shapes chosen to catch mapping mistakes: odd head counts, heads * d_kv != d_model, odd vocabularies,
# uneven encoder / decoder depths, few buckets with a short max distance (so log-spaced buckets are used).
MT5_GATED = dict(kind="mt5", vocab_size=101, d_model=16, d_kv=5, num_heads=3, d_ff=24, num_layers=2,
                 num_decoder_layers=3, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                 feed_forward_proj="gated-gelu", tie_word_embeddings=False)
T5_V10_RELU_TIED = dict(kind="t5", vocab_size=67, d_model=12, d_kv=4, num_heads=5, d_ff=20, num_layers=3,
                        num_decoder_layers=2, relative_attention_num_buckets=10, relative_attention_max_distance=24,
                        feed_forward_proj="relu", tie_word_embeddings=True)
T5_GATED_SILU_ONE_HEAD = dict(kind="t5", vocab_size=53, d_model=10, d_kv=7, num_heads=1, d_ff=14, num_layers=1,
                              num_decoder_layers=1, relative_attention_num_buckets=6,
                              relative_attention_max_distance=12, feed_forward_proj="gated-silu",
                              tie_word_embeddings=False)


def build_hf_model(spec: dict[str, Any], seed: int = 0) -> transformers.PreTrainedModel:
    """A random T5ForConditionalGeneration / MT5ForConditionalGeneration in eval mode (no dropout)."""
    torch.manual_seed(seed)
    fields = {key: value for key, value in spec.items() if key != "kind"}
    fields.update(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0)
    if spec["kind"] == "mt5":
        model = transformers.MT5ForConditionalGeneration(transformers.MT5Config(**fields))
    else:
        model = transformers.T5ForConditionalGeneration(transformers.T5Config(**fields))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layer_norm" in name:
                parameter.copy_(1.0 + 0.3 * torch.randn_like(parameter))
        if not spec["tie_word_embeddings"]:
            model.lm_head.weight = torch.nn.Parameter(torch.randn(spec["vocab_size"], spec["d_model"])
                                                      * spec["d_model"] ** -0.5)
    return model.eval()


def save_hf(model: transformers.PreTrainedModel, directory: pathlib.Path, weights: str = "safetensors") -> None:
    """Writes config.json and the weights as "safetensors", "sharded" safetensors, "bin" or "sharded_bin"."""
    directory.mkdir(parents=True, exist_ok=True)
    if weights == "safetensors":
        model.save_pretrained(directory)
    elif weights == "sharded":
        model.save_pretrained(directory, max_shard_size="4KB")
        assert (directory / "model.safetensors.index.json").is_file()
    else:
        model.config.save_pretrained(directory)
        state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        if model.config.tie_word_embeddings and torch.equal(state["lm_head.weight"], state["shared.weight"]):
            del state["lm_head.weight"]
        if weights == "bin":
            torch.save(state, directory / "pytorch_model.bin")
        else:
            names = sorted(state)
            shards = {"pytorch_model-00001-of-00002.bin": names[::2], "pytorch_model-00002-of-00002.bin": names[1::2]}
            for file, shard_names in shards.items():
                torch.save({name: state[name] for name in shard_names}, directory / file)
            weight_map = {name: file for file, shard_names in shards.items() for name in shard_names}
            total_size = sum(t.numel() * t.element_size() for t in state.values())
            (directory / "pytorch_model.bin.index.json").write_text(
                json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map}))


def read_tensors(directory: pathlib.Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def write_tensors(directory: pathlib.Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({name: t.contiguous() for name, t in tensors.items()}, directory / "model.safetensors",
              metadata={"format": "pt"})


def edit_config(directory: pathlib.Path, **changes: Any) -> dict[str, Any]:
    """Updates keys of config.json (a value of None deletes the key); returns the new config."""
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))
    return config


def make_class_checkpoint(directory: pathlib.Path, block: int, n_passages: int = 4, seed: int = 1,
                          write_layer_key: bool = True) -> dict[str, np.ndarray]:
    """Turns a saved HF dir into the released-CLASS layout: RR architecture, retriever_layer, the three tensors.

    Returns:
      The retriever tensors added (HF names -> numpy).
    """
    config = json.loads((directory / "config.json").read_text())
    inner = config["num_heads"] * config["d_kv"]
    generator = torch.Generator().manual_seed(seed)
    prefix = f"encoder.block.{block}.layer.0.SelfAttention"
    extras = {
        f"{prefix}.query_proj.weight": torch.randn(inner, config["d_model"], generator=generator),
        f"{prefix}.passage_proj.weight": torch.randn(inner, config["d_model"], generator=generator),
        f"{prefix}.layer_norm.weight": 1.0 + 0.3 * torch.randn(inner, generator=generator),
    }
    tensors = read_tensors(directory)
    tensors.update(extras)
    write_tensors(directory, tensors)
    edit_config(directory, architectures=["RRForConditionalGeneration"], n_passages=n_passages,
                retriever_layer=block if write_layer_key else None)
    return {name: t.numpy() for name, t in extras.items()}


def make_reatt_checkpoint(directory: pathlib.Path, layer: int, head: int) -> None:
    """Adds ReAtt's config keys to a saved HF T5 dir."""
    edit_config(directory, retrieval_layer=layer, retrieval_head=head, distillation_tau=0.001)


def write_sentencepiece(path: pathlib.Path, words: tuple[str, ...] = ("river", "castle", "mountain", "harbour",
                                                                      "library", "bridge", "forest", "temple")) -> int:
    """Writes a small English SentencePiece model (pad 0, eos 1, unk 2, byte fallback); returns its piece count."""
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    sentences = [f"question: the {w} of {v} is _X_ title: {w} context: {v} {w} lies near the {v}"
                 for w in words for v in words] * 4
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=320,
                                   model_type="unigram", byte_fallback=True, pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, num_threads=1, minloglevel=2, hard_vocab_limit=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    processor = spm.SentencePieceProcessor()
    processor.Load(str(path))
    return processor.GetPieceSize()


def random_token_rows(rng: np.random.Generator, vocab: int, shape: tuple[int, ...], lengths: np.ndarray,
                      eos: bool) -> np.ndarray:
    """Random ids of the given lengths along the last axis, 0-padded (length 0: an empty row), optionally EOS-ended."""
    tokens = rng.integers(2, vocab, shape).astype(np.int32)
    positions = np.arange(shape[-1])
    tokens = np.where(positions < lengths[..., None], tokens, 0)
    if eos:
        tokens = np.where((positions == lengths[..., None] - 1) & (lengths[..., None] > 0), 1, tokens)
    return tokens.astype(np.int32)
