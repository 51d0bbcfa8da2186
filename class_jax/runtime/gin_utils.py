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
import difflib
import functools
import os
import pathlib
import re
import tokenize
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
              finalize: bool = True, check_macros: bool = False) -> None:
    """Clears gin, then parses files and bindings with the search paths set.

    Args:
      files: gin files, parsed in order.
      bindings: gin bindings, applied after every file.
      extra_search_paths: folders searched for the files and their includes before the installed gin folder.
      finalize: lock the configuration once parsed (gin's finalize hooks run).
      check_macros: refuse macros that nothing uses (see `check_macros_used`), before finalizing; what a job run
        from the command line does, so that a misspelt `--gin.NAME=VALUE` is an error rather than ignored.

    Raises:
      UserError: a file is missing, a binding is invalid, or (check_macros) a macro is set but never used; the
        message names it.
    """
    _use_plain_files_only()
    gin.clear_config(clear_constants=False)
    for path in search_paths(extra_search_paths):
        if path not in gin.config._LOCATION_PREFIXES:  # pylint: disable=protected-access
            gin.add_config_file_search_path(path)
    try:
        gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)
        if check_macros:
            check_macros_used(bindings)
        if finalize:
            gin.finalize()
    except (IOError, ValueError, SyntaxError, TypeError, KeyError, ImportError, tokenize.TokenError) as e:
        raise UserError(f"gin configuration: {type(e).__name__}: {_one_line(e)}") from e


def _one_line(error: Exception) -> str:
    """gin's message for a parse error, on one line, with the text it could not parse."""
    if isinstance(error, tokenize.TokenError):
        return f"{error.args[0] if error.args else error} (an unclosed bracket or quote?)"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ast.literal_eval's own line says nothing useful ("malformed node or string on line 1: <ast.Name ...>").
    lines = [line for line in lines if not line.startswith("malformed node or string")] or lines
    message = "; ".join(lines)
    text = getattr(error, "text", None) if isinstance(error, SyntaxError) else None
    if text and text.strip() and text.strip() not in message:
        where = f" of {error.filename}" if getattr(error, "filename", None) else ""
        message += f", in `{text.strip()}`{where} (a value is a Python literal, with quotes around strings, or a gin " \
                   "reference)"
    return message


# `NAME = value` at the start of a line (no dot in NAME): gin binds a macro, not a configurable's parameter.
_MACRO_BINDING = re.compile(r"^([A-Za-z_][\w/]*)[ \t]*=", re.MULTILINE)


@functools.lru_cache(maxsize=1)
def _shipped_macro_names() -> frozenset[str]:
    """Macros that the installed gin files (gin/) define."""
    names: set[str] = set()
    for path in pathlib.Path(gin_paths.gin_dir()).rglob("*.gin"):
        names.update(_MACRO_BINDING.findall(path.read_text()))
    return frozenset(names)


def _referenced_macros(value: Any) -> set[str]:
    """Names of the macros (`%NAME`) a bound value refers to, anywhere inside it."""
    return {"/".join(ref.scopes) for ref in gin.config.iterate_references({"value": value})
            if ref.configurable.wrapped is gin.config.macro}


def macro_usage() -> tuple[set[str], set[str]]:
    """The macros of the parsed configuration: those defined, and those some configurable's binding reaches.

    A macro is used when a binding of a configurable refers to it (`param = %NAME`), directly or through other
    used macros (`A = %B`); whether the job calls that configurable is not considered.

    Returns:
      (defined, used) macro names.
    """
    config = gin.config._CONFIG  # pylint: disable=protected-access
    macro_values = {scope: bindings.get("value") for (scope, selector), bindings in config.items()
                    if selector == "gin.macro"}
    pending = set()
    for (_, selector), bindings in config.items():
        if selector != "gin.macro":
            for value in bindings.values():
                pending |= _referenced_macros(value)
    used: set[str] = set()
    while pending:
        name = pending.pop()
        if name not in used:
            used.add(name)
            if name in macro_values:
                pending |= _referenced_macros(macro_values[name]) - used
    return set(macro_values), used


def check_macros_used(bindings: Sequence[str] = ()) -> None:
    """Refuses macros that the parsed configuration sets but no configurable uses (a misspelt name, usually).

    Refused: an unused macro set by one of `bindings` (the command line's `--gin.NAME=VALUE` / `--gin_bindings`),
    and an unused macro that no installed gin file defines (a user's gin file). Unused macros of the installed gin
    files themselves are allowed: files shared by several jobs (e.g. demo/common.gin, a run's config.gin given to
    `export`) set macros that only some of the jobs read.

    Args:
      bindings: the bindings given besides the files.

    Raises:
      UserError: naming each refused macro, with the closest known macro name when one is close.
    """
    defined, used = macro_usage()
    from_bindings = {name for binding in bindings for name in _MACRO_BINDING.findall(binding.lstrip())}
    shipped = _shipped_macro_names()
    refused = sorted(name for name in defined - used if name in from_bindings or name not in shipped)
    if not refused:
        return
    hints = {name: _unused_macro_hint(name, sorted((used | shipped) - set(refused))) for name in refused}
    if len(refused) == 1:
        raise UserError(f"gin macro {refused[0]} is set but never used; {hints[refused[0]]}")
    raise UserError("gin macros set but never used: " + ", ".join(f"{name} ({hints[name]})" for name in refused))


def _unused_macro_hint(name: str, known_macros: Sequence[str]) -> str:
    """What the user probably meant by an unused macro: a parameter of that name, a close macro name, or nothing."""
    config = gin.config._CONFIG  # pylint: disable=protected-access
    parameters = sorted({f"{'.'.join(selector.split('.')[-2:])}.{param}" for (_, selector), bindings in config.items()
                         if selector != "gin.macro" for param in bindings if param.lower() == name.lower()})
    if parameters:
        return f"did you mean the parameter {' or '.join(parameters)}?"
    if name in _shipped_macro_names():
        return f"no gin file of this run reads %{name}"
    close = difflib.get_close_matches(name, known_macros, n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else f"no gin file of this run reads %{name}"


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
    parse_gin(args.gin_file, [*args.gin_bindings, *getattr(args, "gin_overrides", [])], args.gin_search_paths,
              check_macros=True)


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
    except UserError as e:
        # gin appends "In call to configurable ..." lines to what a configurable raises; a UserError stays one line.
        message = str(e).split(_GIN_CALL_CONTEXT, 1)[0]
        if message == str(e):
            raise
        raise UserError(message) from e
    except TypeError as e:
        if "missing" in str(e) and "required" in str(e):
            raise UserError(f"gin configuration: {e}") from e
        raise


_GIN_CALL_CONTEXT = "\n  In call to configurable"


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
