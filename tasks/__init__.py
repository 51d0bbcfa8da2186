"""SeqIO tasks and mixtures of class_jax (installed as `class_jax.tasks`), and the pair text format they tokenise into.

Importing the package registers the query-level tasks whose files the environment names (tasks/query_tasks.py).
FiD tasks over FiD example files (every stage's training and evaluation data) are registered at run time by
tasks/fid_tasks.py, usually from the gin stage files. The model's feature converter lives with the model
(`class_jax.models.feature_converter`, named by `CLASSModel.FEATURE_CONVERTER_CLS`).

Modules, in data-flow order:
    text_inputs      the exact query / passage text formats and their tokenisation (numpy and tf)
    vocab            mT5's SentencePiece vocabulary, or one trained on the demo corpus
    query_sources    XOR-TyDi / MKQA / NQ-open (CSV and TFDS) / demo question readers
    preprocessors    tokenisation into the model's query / passage / answer features
    query_tasks      query-level tasks over the question readers
    fid_files        the FiD example file format: writer, reader, SeqIO source
    fid_tasks        FiD tasks and per-language mixtures (CLR-PT, MLQA-PT, fine-tuning, evaluation)
    span_corruption  T5's span corruption (noise mask, sentinels, chunking) for self-supervised pretraining
"""

from class_jax.tasks import query_tasks

USE_CACHED_TASKS = False

query_tasks.register_from_environment()
