"""Installs class_jax, its SeqIO tasks (as `class_jax.tasks`) and gin files (as `class_jax.gin`)."""

import setuptools

# Exact pins: these versions were resolved together on Python 3.11 and are what CI installs.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "tensorstore==0.1.86",
    "msgpack==1.2.4",
    "numpy==2.4.6",
    "seqio==0.0.20",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "tensorboard==2.21.0",
    # 0.2.3 ships protobuf-7 generated code that tensorflow's protobuf 6 runtime refuses.
    "sentencepiece==0.2.1",
    "protobuf==6.33.6",
    "gin-config==0.5.0",
    "clu==0.0.12",
    "safetensors==0.8.0",
    "mwxml==0.3.8",
    "mwparserfromhell==0.7.2",
    "apache-beam==2.77.0",
    "faiss-cpu==1.15.1",
    "bm25s==0.3.16",
    "nltk==3.10.4",
    "mecab-python3==1.0.12",
    "unidic-lite==1.0.8",
    "sacrebleu==2.6.0",
    "requests==2.34.2",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
]

EXTRAS_REQUIRE = {
    "tpu": ["jax[tpu]==0.10.2"],
    "cuda": ["jax[cuda12]==0.10.2"],
    # Hugging Face import/export verification and parity tests.
    "hf": ["torch==2.13.0", "transformers==5.24.0"],
    "test": ["pytest==9.2.0"],
    # Benchmark peers that are not needed otherwise (bench/mining.py compares ingestion with WikiExtractor).
    "bench": ["wikiextractor==3.1.0"],
}

setuptools.setup(
    name="class_jax",
    version="0.1.0",
    description="CLASS (cross-lingual open-domain QA with synthetic supervision) in JAX/Flax",
    python_requires=">=3.11",
    packages=(
        # Namespace discovery also lists data-only folders (prompts/, demo_templates/) so their files install.
        setuptools.find_namespace_packages(include=["class_jax", "class_jax.*"], exclude=["*.__pycache__"])
        + ["class_jax.tasks"]
        + ["class_jax.gin"]
        + ["class_jax.gin." + sub for sub in setuptools.find_namespace_packages(where="gin")]
    ),
    package_dir={"class_jax.tasks": "tasks", "class_jax.gin": "gin"},
    package_data={"class_jax.gin": ["*.gin", "**/*.gin"], "class_jax": ["**/*.json", "**/*.txt", "**/*.tsv"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["class-jax=class_jax.cli:main"]},
)
