"""The model identity an index records: what changes it and what does not."""

import dataclasses

import pytest

from class_jax.models.config import ModelConfig
from class_jax.retrieval import model_identity

CONFIG = ModelConfig(vocab_size=67, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=24, num_encoder_layers=2,
                     num_decoder_layers=1)


@pytest.mark.parametrize("change", [{"remat_policy": "full"}, {"attention_kernel": "xla"}, {"dropout_rate": 0.0},
                                    {"attention_dropout_rate": 0.0}, {"retrieval_target_dropout": True}])
def test_execution_choices_keep_the_config_hash(change):
    assert set(change) <= model_identity.EXECUTION_FIELDS
    assert model_identity.config_hash(dataclasses.replace(CONFIG, **change)) == model_identity.config_hash(CONFIG)


@pytest.mark.parametrize("change", [{"emb_dim": 32}, {"retriever_layer": 0}, {"dtype": "bfloat16"},
                                    {"retrieval_mode": "token"}, {"relative_attention_num_buckets": 16}])
def test_what_the_retriever_computes_changes_the_config_hash(change):
    assert model_identity.config_hash(dataclasses.replace(CONFIG, **change)) != model_identity.config_hash(CONFIG)
