"""SeqIO tasks and mixtures of class_jax (installed as `class_jax.tasks`).

Importing the package registers the FiD feature converter of `CLASSModel` with the trainer and the query-level
tasks whose files the environment names (tasks/query_tasks.py). FiD tasks over FiD example files (every stage's
training and evaluation data) are registered at run time by tasks/fid_tasks.py, usually from the gin stage files.

    fid_files.py           the FiD example file format: writer, reader, SeqIO source
    fid_tasks.py           FiD tasks and per-language mixtures (CLR-PT, MLQA-PT, fine-tuning, evaluation)
    query_sources.py       XOR-TyDi / MKQA / NQ-open (CSV and TFDS) / demo question readers
    query_tasks.py         query-level tasks over them
    preprocessors.py       tokenisation into the model's query / passage / answer features
    feature_converters.py  the FiD feature converter (CLASSModel's batch features)
    fid_builders.py        FiD examples from questions or mined records plus a retriever's passages
    vocab.py               mT5's SentencePiece vocabulary, or one trained on the demo corpus
"""

from class_jax.models.class_model import CLASSModel
from class_jax.tasks import feature_converters
from class_jax.tasks import query_tasks
from class_jax.trainer import data as _trainer_data

USE_CACHED_TASKS = False

_trainer_data.register_feature_converter(CLASSModel, feature_converters.FiDFeatureConverter)
query_tasks.register_from_environment()
