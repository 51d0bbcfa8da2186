"""Gin plumbing shared by the commands: flags, search paths, parsing, running a configured job, saving configs.

Flags (T5X's):
  --gin_file=FILE              (repeatable) parsed in order; relative names are looked up in the working
                               directory, then in --gin_search_paths, then in the installed class_jax/gin folder
  --gin.NAME=VALUE             one binding, e.g. --gin.MODEL_DIR="'/tmp/run'" or --gin.train_script.train.total_steps=10
  --gin_bindings=BINDING       (repeatable) a binding as written in a gin file
  --gin_search_paths=A,B       extra folders for --gin_file and gin `include`s
Bindings apply after every file, in the order given on the command line.

A process that runs several configured jobs (the demo) parses each in `with scoped_config(files, bindings):`,
which clears gin after the block and refuses to open inside another parsed configuration.
"""

import argparse
import contextlib
import copy
import os
import pathlib
from typing import Any, Callable, Iterator, Sequence

import gin
import jax

from class_jax.runtime.errors import UserError
from class_jax.runtime import gin_paths

GIN_OVERRIDE_PREFIX = "--gin."


def _use_plain_files_only() -> None:
    """Stops gin from also resolving file names as Python package resources.

    gin's resource reader turns "models/x.gin" into a lookup of a package named `models`; a namespace package of
    that name anywhere on sys.path (e.g. a tests/models folder) makes it crash, and it logs an ERROR for every
    search path it misses. class_jax's gin files are found through the search paths instead.
    """
    readers = gin.config._FILE_READERS  # pylint: disable=protected-access
    readers[:] = [(reader, exists) for reader, exists in readers
                  if getattr(exists, "__module__", "") != "gin.resource_reader"]


def add_gin_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --gin_file / --gin_bindings / --gin_search_paths and accepts --gin.NAME=VALUE on this parser."""
    group = parser.add_argument_group("gin configuration")
    group.add_argument("--gin_file", action="append", default=[], help="gin file to parse (repeatable)")
    group.add_argument("--gin_bindings", action="append", default=[], help="gin binding (repeatable)")
    group.add_argument("--gin_search_paths", default="", help="comma-separated folders searched for gin files")
    parser.epilog = ((parser.epilog or "") + "\n\n--gin.NAME=VALUE binds NAME (a macro or a configurable's parameter) "
                     "to VALUE, e.g. --gin.TRAIN_STEPS=1000 --gin.MODEL_DIR=\"'/tmp/run'\"").strip()
    _accept_gin_overrides(parser)


def _accept_gin_overrides(parser: argparse.ArgumentParser) -> None:
    """Makes `parser.parse_args` turn --gin.NAME=VALUE arguments into bindings (args.gin_overrides).

    argparse cannot declare a family of options by prefix, so the command's parser parses known options and the
    rest is accepted only if it is such an override.
    """
    original_parse_known_args = parser.parse_known_args

    def parse_args(args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        parsed, rest = original_parse_known_args(args, namespace)
        overrides, unknown = [], []
        items = list(rest)
        while items:
            item = items.pop(0)
            if item.startswith(GIN_OVERRIDE_PREFIX):
                name_value = item[len(GIN_OVERRIDE_PREFIX):]
                if "=" not in name_value:
                    if not items:
                        parser.error(f"{item} needs a value (--gin.NAME=VALUE)")
                    name_value = f"{name_value}={items.pop(0)}"
                name, value = name_value.split("=", 1)
                overrides.append(f"{name} = {value}")
            else:
                unknown.append(item)
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        parsed.gin_overrides = overrides
        return parsed

    parser.parse_args = parse_args  # type: ignore[method-assign]


def search_paths(extra: str | Sequence[str] = "") -> list[str]:
    """Folders searched for gin files: the working directory, `extra`, then the installed class_jax/gin folder."""

    extra_list = [p for p in (extra.split(",") if isinstance(extra, str) else extra) if p]
    return [os.getcwd(), *extra_list, str(gin_paths.gin_dir())]


def parse_gin(files: Sequence[str], bindings: Sequence[str], extra_search_paths: str | Sequence[str] = "",
              finalize: bool = True) -> None:
    """Clears gin, then parses files and bindings with the search paths set.

    Raises:
      UserError: a file is missing or a binding is invalid (the message names it).
    """
    _use_plain_files_only()
    gin.clear_config(clear_constants=False)
    for path in search_paths(extra_search_paths):
        if path not in gin.config._LOCATION_PREFIXES:  # pylint: disable=protected-access
            gin.add_config_file_search_path(path)
    try:
        gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=finalize)
    except (IOError, ValueError, SyntaxError, TypeError, KeyError, ImportError) as e:
        raise UserError(f"gin configuration: {type(e).__name__}: {e}") from e


def holds_config() -> bool:
    """Whether gin holds a parsed configuration (bindings, macros or imports) that `gin.clear_config` would drop."""
    return bool(gin.config._CONFIG) or bool(gin.config._IMPORTS)  # pylint: disable=protected-access


@contextlib.contextmanager
def scoped_config(files: Sequence[str], bindings: Sequence[str] = (), extra_search_paths: str | Sequence[str] = "",
                  finalize: bool = True) -> Iterator[None]:
    """Parses a gin configuration for the body of a `with` block and clears it afterwards, also on an exception.

    For a process that runs several configured jobs one after another (the demo: train, export, eval, ...), each
    with its own files and bindings:

        with gin_utils.scoped_config(["demo/clr_pt.gin"], bindings):
            result = gin_utils.run_configured(train_script.train)

    Parsing is `parse_gin`'s: the same search paths (working directory, `extra_search_paths`, the installed gin
    folder) and the same UserError for a missing file or a bad binding.

    Nesting is refused rather than restored: gin has one global configuration and no public way to save and
    restore it, so a scope opened over a parsed configuration (an enclosing `scoped_config`, or a job's
    `parse_gin` not yet cleared) would silently replace it and then leave gin empty for the code that parsed it.
    Clear the outer configuration first (`gin.clear_config()`) or end its scope.

    Args:
      files: gin files, parsed in order (relative names are looked up on the search paths).
      bindings: gin bindings, applied after every file.
      extra_search_paths: folders searched for the files and their includes before the installed gin folder.
      finalize: lock the configuration once parsed (gin's finalize hooks run), as a job's configuration is.

    Yields:
      Nothing; gin holds the configuration inside the block.

    Raises:
      RuntimeError: gin already holds a parsed configuration (nothing is parsed or cleared then).
      UserError: a file is missing or a binding is invalid (gin is left cleared).
    """
    if holds_config():
        raise RuntimeError("gin_utils.scoped_config: gin already holds a parsed configuration (an enclosing "
                           "scoped_config, or a parse_gin not yet cleared); nested gin scopes are refused, since "
                           "leaving this one would clear the outer configuration")
    try:
        parse_gin(files, bindings, extra_search_paths, finalize=finalize)
        yield
    finally:
        gin.clear_config()


def configured_argument(selector: str, name: str) -> Any:
    """What gin passes as parameter `name` when it calls the configurable `selector` under the parsed config.

    Macros and `@fn()` references inside the value are evaluated as gin evaluates them for that call, and
    bindings of enclosing scopes count (`data.DatasetConfig.x` applies to `train/data.DatasetConfig`); other
    parameters of the configurable are not evaluated. For reading a job's settings without running the job, e.g.
    `configured_argument("train/data.DatasetConfig", "task_feature_lengths")` is the train job's lengths.

    Args:
      selector: the configurable, optionally scoped ("scope/module.Name").
      name: the parameter.

    Returns:
      The evaluated value.

    Raises:
      UserError: gin binds nothing to that parameter (its default would apply).
    """
    try:
        bindings = gin.get_bindings(selector, resolve_references=False)
    except (KeyError, ValueError):
        bindings = {}
    if name not in bindings:
        raise UserError(f"gin configuration: nothing bound to {selector}.{name}")
    return copy.deepcopy(bindings[name])  # gin's own evaluation of references (ConfigurableReference.__deepcopy__)


def parse_gin_from_args(args: argparse.Namespace) -> None:
    """Parses what --gin_file / --gin_bindings / --gin.NAME=VALUE / --gin_search_paths say."""
    if not args.gin_file:
        raise UserError("no --gin_file given (see gin/runs/ and gin/stages/ for examples)")
    parse_gin(args.gin_file, [*args.gin_bindings, *getattr(args, "gin_overrides", [])], args.gin_search_paths)


def run_configured(fn: Callable[..., Any]) -> Any:
    """Calls `fn` with its gin bindings (files import its module by its real path, T5X style).

    Raises:
      UserError: the gin files bind nothing for `fn`, or a required parameter is missing.
    """
    try:
        configured = gin.get_configurable(fn)
    except (KeyError, ValueError):
        raise UserError(f"the gin files configure nothing for {fn.__module__}.{fn.__qualname__}; do they import "
                        f"{fn.__module__} and bind its parameters?") from None
    try:
        return configured()
    except TypeError as e:
        if "missing" in str(e) and "required" in str(e):
            raise UserError(f"gin configuration: {e}") from e
        raise


def write_config(path: pathlib.Path) -> None:
    """Writes the full parsed gin config (process 0; nothing when gin holds no config)."""
    _write(path, gin.config_str())


def write_operative_config(path: pathlib.Path) -> None:
    """Writes the operative gin config: the bindings actually used so far (process 0)."""
    _write(path, gin.operative_config_str())


def _write(path: pathlib.Path, text: str) -> None:
    if jax.process_index() != 0 or not text.strip():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
