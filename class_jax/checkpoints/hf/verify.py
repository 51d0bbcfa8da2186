"""Parity of our Flax model with the Hugging Face torch model on the same weights.

Runs both on one random batch (padded encoder inputs, padded labels) in float32 and reports the largest absolute
differences of the encoder output, the decoder logits and the mean cross-entropy. torch and transformers are
optional dependencies (`pip install class_jax[hf]`), imported only here and only when a check runs.
"""

import pathlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from class_jax.runtime.errors import UserError
from class_jax.models import decoding, losses
from class_jax.models.config import ModelConfig
from class_jax.models.network import Transformer

# fp32 parity bound of `class-jax convert --verify`.
TOLERANCE = 1e-4
_LABEL_PAD = -100  # transformers' ignore index


def import_torch_transformers() -> tuple[Any, Any]:
    """(torch, transformers), or a UserError saying how to install them."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
        import transformers  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise UserError(f"verification runs the source model in transformers, which needs torch and transformers "
                        f"(pip install 'class_jax[hf]'): {e}") from e
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return torch, transformers


def random_batch(vocab_size: int, *, batch_size: int = 2, input_length: int = 32, target_length: int = 12,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids with padding: every row after the first is shorter, so masks are exercised.

    Returns:
      {"input_ids" [b, n] (0 = pad), "labels" [b, m] (-100 = pad)} as int64 (what torch embeddings take).
    """
    if vocab_size < 3:
        raise UserError(f"vocab_size={vocab_size}: need at least one id besides pad (0) and EOS (1)")
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(2, vocab_size, size=(batch_size, input_length))
    labels = rng.integers(2, vocab_size, size=(batch_size, target_length))
    for row in range(1, batch_size):
        input_ids[row, input_length - input_length * row // (2 * batch_size):] = 0
        labels[row, target_length - target_length * row // (2 * batch_size):] = _LABEL_PAD
    return {"input_ids": input_ids, "labels": labels}


def decoder_inputs(labels: np.ndarray) -> np.ndarray:
    """Labels shifted right behind start id 0, pads as 0 (what transformers' T5 `_shift_right` does)."""
    shifted = np.zeros_like(labels)
    shifted[:, 1:] = labels[:, :-1]
    return np.where(shifted == _LABEL_PAD, 0, shifted)


def hf_outputs(hf_directory: pathlib.Path, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Encoder output, logits and loss of the transformers model in `hf_directory` on `batch` (float32)."""
    torch, transformers = import_torch_transformers()
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(hf_directory), dtype=torch.float32)
    model.eval()
    input_ids = torch.from_numpy(batch["input_ids"])
    with torch.no_grad():
        # Decoder inputs are given explicitly: configs without decoder_start_token_id cannot shift labels.
        out = model(input_ids=input_ids, attention_mask=(input_ids > 0).long(),
                    decoder_input_ids=torch.from_numpy(decoder_inputs(batch["labels"])),
                    labels=torch.from_numpy(batch["labels"]))
    return {"encoder": out.encoder_last_hidden_state.numpy(), "logits": out.logits.numpy(),
            "loss": np.asarray(out.loss.item())}


def jax_outputs(params: Mapping[str, Any], config: ModelConfig,
                batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same three quantities from our model (`Transformer.encode` / `decode`), at highest matmul precision."""
    module = Transformer(config)

    @jax.jit
    def forward(params: Mapping[str, Any], tokens: jax.Array, decoder_input_tokens: jax.Array,
                targets: jax.Array, weights: jax.Array) -> dict[str, jax.Array]:
        encoded = module.apply({"params": params}, tokens, method="encode")
        logits, _ = module.apply({"params": params}, encoded, tokens > 0, decoder_input_tokens, method="decode")
        loss, _, _ = losses.cross_entropy(logits, targets, weights)
        return {"encoder": encoded, "logits": logits, "loss": loss}

    labels = batch["labels"]
    with jax.default_matmul_precision("highest"):
        out = forward(params, jnp.asarray(batch["input_ids"], jnp.int32),
                      jnp.asarray(decoder_inputs(labels), jnp.int32), jnp.asarray(np.maximum(labels, 0), jnp.int32),
                      jnp.asarray(labels != _LABEL_PAD, jnp.float32))
    return {name: np.asarray(value) for name, value in out.items()}


def greedy_decode(params: Mapping[str, Any], config: ModelConfig, input_ids: np.ndarray, max_length: int,
                  eos_id: int = 1) -> np.ndarray:
    """Greedy answers of our model for plain (non-FiD) inputs, via the model package's cached decoding.

    Args:
      params: parameters.
      config: the model.
      input_ids: [batch, length] encoder tokens (0 = pad).
      max_length: tokens to generate at most.
      eos_id: end-of-sequence id.

    Returns:
      [batch, max_length] int32 tokens, 0 after EOS.
    """
    module = Transformer(config)

    @jax.jit
    def run(params: Mapping[str, Any], tokens: jax.Array) -> jax.Array:
        valid = tokens > 0
        encoded = module.apply({"params": params}, tokens, method="encode")
        # The first decode call sizes the cache for max_length positions.
        _, created = module.apply({"params": params}, encoded, valid,
                                  jnp.zeros((tokens.shape[0], max_length), jnp.int32), True, True,
                                  method="decode", mutable=["cache"])

        def step(cache: Any, last_tokens: jax.Array) -> tuple[jax.Array, Any]:
            (logits, _), mutated = module.apply({"params": params, "cache": cache}, encoded, valid, last_tokens,
                                                True, True, method="decode", mutable=["cache"])
            return logits[:, -1], mutated["cache"]

        return decoding.greedy_decode(step, created["cache"], tokens.shape[0], max_length, eos_id)

    with jax.default_matmul_precision("highest"):
        return np.asarray(run(params, jnp.asarray(input_ids, jnp.int32)))


def compare_with_hf(hf_directory: pathlib.Path, params: Mapping[str, Any], config: ModelConfig, *,
                    seed: int = 0) -> dict[str, Any]:
    """Runs both models on one random batch and measures how far apart they are.

    Args:
      hf_directory: a transformers-loadable checkpoint with the same weights.
      params: our nested parameters.
      config: our model.
      seed: of the random batch.

    Returns:
      {"max_abs_diff_encoder", "max_abs_diff_logits", "max_abs_diff_loss", "tolerance", "ok"}; the encoder is
      compared at non-pad positions only (pad rows are never read and both sides fill them arbitrarily).
    """
    batch = random_batch(config.vocab_size, seed=seed)
    ours = jax_outputs(params, config, batch)
    theirs = hf_outputs(hf_directory, batch)
    valid = batch["input_ids"] > 0
    result = {
        "max_abs_diff_encoder": float(np.max(np.abs(ours["encoder"] - theirs["encoder"])[valid])),
        "max_abs_diff_logits": float(np.max(np.abs(ours["logits"] - theirs["logits"]))),
        "max_abs_diff_loss": float(np.abs(ours["loss"] - theirs["loss"])),
        "tolerance": TOLERANCE,
    }
    result["ok"] = all(value <= TOLERANCE for key, value in result.items() if key.startswith("max_abs_diff"))
    return result
