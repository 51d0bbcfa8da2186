"""`class-jax convert`: import HF / T5X checkpoints, export to HF, and check parity with transformers.

    class-jax convert --from {hf,t5x,class_jax} --input PATH --output DIR [--to {class_jax,hf}]
                      [--num_heads N] [--override FIELD=VALUE ...] [--spiece_model FILE] [--seed S]
                      [--overwrite] [--verify]

What the import did (parameters it had to create, assumptions) goes to stderr. With --verify the written
checkpoint is read back, run in JAX and compared with the transformers model — the source itself for
`--from hf`, otherwise an HF export of the same weights — and ONE JSON line of max abs differences is printed to
stdout; the exit code is 1 when any exceeds the fp32 tolerance.
"""

import argparse
import dataclasses
import json
import pathlib
import sys
import tempfile
from typing import Any

from class_jax.checkpoints.hf import export, reader
from class_jax.checkpoints import import_report, param_layout, params_io, t5x as t5x_io
from class_jax.checkpoints.import_report import ImportedCheckpoint, ImportReport
from class_jax.runtime.errors import UserError
from class_jax.models.config import ModelConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the command's flags."""
    parser.add_argument("--from", dest="source_format", required=True, choices=("hf", "t5x", "class_jax"),
                        help="format of --input")
    parser.add_argument("--input", required=True, type=pathlib.Path,
                        help="HF directory, T5X msgpack file or checkpoint_N directory, or class_jax checkpoint")
    parser.add_argument("--output", required=True, type=pathlib.Path, help="directory to write")
    parser.add_argument("--to", dest="target_format", default="class_jax", choices=("class_jax", "hf"),
                        help="format to write (default: class_jax)")
    parser.add_argument("--num_heads", type=int, default=None,
                        help="attention heads (T5X: otherwise from config.gin or the position-bias table)")
    parser.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                        help="set a ModelConfig field (VALUE parsed as JSON, else taken as a string), e.g. "
                             "retrieval_mode=token, retriever_layer=12, dropout_rate=0.0; repeatable")
    parser.add_argument("--spiece_model", type=pathlib.Path, default=None,
                        help="sentencepiece model to store with the output (default: the source's spiece.model; "
                             "T5X checkpoints keep theirs elsewhere)")
    parser.add_argument("--seed", type=int, default=0, help="seed for parameters the source lacks")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.add_argument("--verify", action="store_true",
                        help="compare with the transformers model on random inputs (needs torch + transformers)")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["dropout_rate=0.0", "mlp_activations=[\"silu\",\"linear\"]"] -> {field: value} (lists as tuples).

    Raises:
      UserError: an item without "=" or naming no ModelConfig field.
    """
    fields = {field.name for field in dataclasses.fields(ModelConfig)}
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in fields:
            raise UserError(f"--override {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        overrides[name] = tuple(value) if isinstance(value, list) else value
    return overrides


def _load_class_jax(path: pathlib.Path, overrides: dict[str, Any], seed: int) -> ImportedCheckpoint:
    params, config = params_io.load_params(path)
    previous = ImportReport.read(path)
    report = ImportReport(source=str(path), source_format="class_jax",
                          source_hf_config=previous.source_hf_config if previous else None)
    flat = param_layout.flatten(params)
    report.count_dtypes(flat.values())
    if overrides:
        config = dataclasses.replace(config, **overrides)
        try:
            config.validate()
        except ValueError as e:
            raise UserError(f"--override: {e}") from e
        report.notes.append(f"overridden: {overrides}")
        problems = param_layout.describe_mismatches({p: a.shape for p, a in flat.items()}, config, source=str(path),
                                                    allowed_missing=param_layout.RETRIEVER_PARAMS)
        if problems:
            raise UserError(" | ".join(problems))
        import_report.add_new_parameters(flat, config, report, seed=seed)
    spiece = path / params_io.SPIECE_FILE
    return ImportedCheckpoint(params=flat, config=config, report=report,
                              spiece_model=spiece if spiece.is_file() else None)


def load_source(args: argparse.Namespace) -> ImportedCheckpoint:
    """Reads --input in its --from format, applying --num_heads / --override."""
    overrides = parse_overrides(args.override)
    if args.source_format == "t5x":
        return t5x_io.load_t5x_checkpoint(args.input, num_heads=args.num_heads, overrides=overrides, seed=args.seed)
    if args.source_format == "hf":
        source = reader.load_hf_checkpoint(args.input, overrides=overrides, seed=args.seed)
    else:
        source = _load_class_jax(args.input, overrides, args.seed)
    # These formats record their heads; a different --num_heads is a mistake, not a request.
    if args.num_heads is not None and args.num_heads != source.config.num_heads:
        raise UserError(f"--num_heads={args.num_heads} but {args.input} has {source.config.num_heads} heads")
    return source


def _verify(args: argparse.Namespace, source: ImportedCheckpoint) -> dict[str, Any]:
    from class_jax.checkpoints.hf import verify  # pylint: disable=import-outside-toplevel

    if args.target_format == "class_jax":
        params, config = params_io.load_params(args.output)
    else:
        written = reader.load_hf_checkpoint(args.output)
        params, config = param_layout.unflatten(written.params), written.config
    if args.source_format == "hf":
        return verify.compare_with_hf(args.input, params, config, seed=args.seed)
    if args.target_format == "hf":
        return verify.compare_with_hf(args.output, params, config, seed=args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        reference = export.export_hf(pathlib.Path(scratch) / "hf", params, config,
                                     source_hf_config=source.report.source_hf_config)
        return verify.compare_with_hf(reference, params, config, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    """Converts; returns 0, or 1 when --verify finds a difference above tolerance."""
    if args.verify:  # fail before any work when torch / transformers are missing
        from class_jax.checkpoints.hf import verify  # pylint: disable=import-outside-toplevel
        verify.import_torch_transformers()
    if args.spiece_model is not None and not args.spiece_model.is_file():
        raise UserError(f"--spiece_model {args.spiece_model}: no such file")
    source = load_source(args)
    if args.spiece_model is not None:
        source.spiece_model = args.spiece_model
    print(source.report.summary(), file=sys.stderr)
    nested = param_layout.unflatten(source.params)
    if args.target_format == "class_jax":
        written = params_io.save_params(args.output, nested, source.config, report=source.report,
                                        spiece_model=source.spiece_model, overwrite=args.overwrite)
    else:
        written = export.export_hf(args.output, nested, source.config,
                                   source_hf_config=source.report.source_hf_config,
                                   spiece_model=source.spiece_model, overwrite=args.overwrite)
    print(f"wrote {args.target_format} checkpoint {written}", file=sys.stderr)
    if not args.verify:
        return 0
    result = _verify(args, source)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1
