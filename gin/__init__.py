"""Gin configuration files of class_jax (installed as `class_jax.gin`)."""

import pathlib

GIN_DIR = pathlib.Path(__file__).resolve().parent
