"""Range and type checks of gin-configured values, failing with one line that names the gin parameter.

A job's numbers come from gin (`--gin.TRAIN_STEPS=abc`, `BATCH_SIZE = -5` in a file), so a bad one would otherwise
surface as a traceback deep inside the job or, worse, be accepted. The configurables check their values first:

    config_checks.integer(total_steps, train, "total_steps", minimum=1)

raises `InvalidValue` ("gin parameter train_script.train.total_steps (set by macro TRAIN_STEPS) must be an integer
>= 1; got 'abc'"), a UserError (one line, exit code 2 from the CLI) that is also a ValueError for Python callers.
"""

import math
import numbers
from typing import Any, Callable, Collection, Optional

import gin

from class_jax.runtime.errors import UserError


class InvalidValue(UserError, ValueError):
    """A configured value of the wrong type or outside its allowed range."""


def parameter_name(fn: Callable[..., Any] | str, param: str) -> str:
    """`module.fn.param` as gin files spell it, plus the macro the parsed gin configuration binds it to, if any.

    Args:
      fn: the configurable (function or class), or a display name for values that gin does not bind directly.
      param: its parameter.

    Returns:
      E.g. "train_script.train.total_steps (set by macro TRAIN_STEPS)".
    """
    if isinstance(fn, str):
        return f"{fn}.{param}"
    short = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__qualname__}"
    macros = set()
    for (_, selector), bindings in gin.config._CONFIG.items():  # pylint: disable=protected-access
        if not selector.endswith("." + fn.__qualname__):
            continue
        try:
            configurable = gin.config._REGISTRY[selector]  # pylint: disable=protected-access
        except KeyError:
            continue
        if fn not in (configurable.wrapped, configurable.wrapper):
            continue
        short = ".".join(selector.split(".")[-1 - fn.__qualname__.count(".") - 1:])  # as an import alias names it
        value = bindings.get(param)
        if isinstance(value, gin.config.ConfigurableReference) and value.configurable.wrapped is gin.config.macro:
            macros.add("/".join(value.scopes))
    name = f"{short}.{param}"
    return f"{name} (set by macro {macros.pop()})" if len(macros) == 1 else name


def _fail(fn: Callable[..., Any] | str, param: str, requirement: str, value: Any) -> InvalidValue:
    return InvalidValue(f"gin parameter {parameter_name(fn, param)} must be {requirement}; got {value!r}")


def _range_text(minimum: Optional[float], maximum: Optional[float], exclusive_minimum: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}" if isinstance(minimum, float)
                     else f"{'>' if exclusive_minimum else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"<= {maximum}")
    return " and ".join(parts)


def integer(value: Any, fn: Callable[..., Any] | str, param: str, *, minimum: Optional[int] = None,
            maximum: Optional[int] = None, allow_none: bool = False) -> Optional[int]:
    """Checks that `value` is an integer (not a bool or a float) within [minimum, maximum].

    Args:
      value: the configured value.
      fn: the configurable that takes it (names the parameter in the error).
      param: the parameter.
      minimum: smallest allowed value (None: unbounded).
      maximum: largest allowed value (None: unbounded).
      allow_none: None is allowed too.

    Returns:
      The value as an int (None stays None).

    Raises:
      InvalidValue: the value is not such an integer.
    """
    if value is None and allow_none:
        return None
    requirement = " ".join(filter(None, ["an integer", _range_text(minimum, maximum, False),
                                         "or None" if allow_none else ""]))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(fn, param, requirement, value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _fail(fn, param, requirement, value)
    return int(value)


def number(value: Any, fn: Callable[..., Any] | str, param: str, *, minimum: Optional[float] = None,
           exclusive_minimum: bool = False, maximum: Optional[float] = None,
           allow_none: bool = False) -> Optional[float]:
    """Checks that `value` is a finite real number (not a bool) within the range.

    Args:
      value: the configured value.
      fn: the configurable that takes it (names the parameter in the error).
      param: the parameter.
      minimum: lower bound (None: unbounded).
      exclusive_minimum: the lower bound itself is not allowed (value > minimum).
      maximum: upper bound, inclusive (None: unbounded).
      allow_none: None is allowed too.

    Returns:
      The value as a float (None stays None).

    Raises:
      InvalidValue: the value is not such a number.
    """
    if value is None and allow_none:
        return None
    requirement = " ".join(filter(None, ["a finite number", _range_text(minimum, maximum, exclusive_minimum),
                                         "or None" if allow_none else ""]))
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise _fail(fn, param, requirement, value)
    too_small = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    if too_small or (maximum is not None and value > maximum):
        raise _fail(fn, param, requirement, value)
    return float(value)


def choice(value: Any, fn: Callable[..., Any] | str, param: str, choices: Collection[Any]) -> Any:
    """Checks that `value` is one of `choices`.

    Raises:
      InvalidValue: it is not.
    """
    try:
        if value in choices:
            return value
    except TypeError:  # unhashable
        pass
    raise _fail(fn, param, f"one of {', '.join(repr(c) for c in choices)}", value)
