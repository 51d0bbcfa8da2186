"""Transparent huge pages for large host allocations: the `class-jax` process re-executes itself once with glibc's
`glibc.malloc.hugetlb=1` tunable.

Why: glibc serves every allocation above 32 MiB with a fresh `mmap` and returns it with `munmap` when freed. XLA:CPU
allocates its temporaries per call, and an mT5 training step holds several vocabulary-sized ones (the [250112, d]
embedding and output-projection gradients, the logits). Each step therefore faults in gigabytes of new 4 KiB pages,
which the kernel zeroes one by one: measured on `bench/model_step.py --size small` (2 CPU cores), 6.8 M page faults
and a 3.13 s step by default, 0.28 M faults and a 2.27 s step with the tunable, which makes malloc ask for 2 MiB
transparent huge pages (`madvise(MADV_HUGEPAGE)`). The tunable is read only when a process starts, hence the
re-execution; it changes no result, only where memory comes from.

It is skipped where it cannot help or is unwanted: not Linux/glibc >= 2.35, transparent huge pages set to `never`,
the tunable already set, or CLASS_JAX_HUGE_PAGE_MALLOC=0 in the environment (e.g. under a debugger).
"""

import logging
import os
import pathlib
import platform
import sys
from typing import Mapping, Optional

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT_VARIABLE = "CLASS_JAX_HUGE_PAGE_MALLOC"
_THP_SETTING = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _glibc_version() -> Optional[tuple[int, int]]:
    """The running glibc's (major, minor), or None where the C library is not glibc."""
    library, version = platform.libc_ver()
    if library != "glibc" or not version:
        return None
    try:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _transparent_huge_pages_available(setting_file: pathlib.Path = _THP_SETTING) -> bool:
    """Whether the kernel grants transparent huge pages on request (`always` or `madvise`, not `never`)."""
    try:
        return "[never]" not in setting_file.read_text()
    except OSError:
        return False


def tuned_environment(environ: Mapping[str, str], glibc_version: Optional[tuple[int, int]],
                      huge_pages_available: bool) -> Optional[dict[str, str]]:
    """The environment to re-execute with, or None when the current one should be kept.

    Args:
      environ: the current environment.
      glibc_version: the running glibc's (major, minor); None where it is not glibc.
      huge_pages_available: whether the kernel grants transparent huge pages on request.

    Returns:
      A copy of `environ` with the tunable appended to GLIBC_TUNABLES, or None (opted out, already set, or
      unsupported).
    """
    if environ.get(OPT_OUT_VARIABLE, "1") == "0":
        return None
    if glibc_version is None or glibc_version < (2, 35) or not huge_pages_available:
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return None  # already chosen by the user (or by our own earlier re-execution)
    tuned = dict(environ)
    tuned["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    return tuned


def reexec_with_huge_page_malloc() -> None:
    """Replaces the current process with the same command under the tunable; returns only when that is not wanted.

    Call it first thing in a program's entry point, before work that allocates. The process keeps its PID,
    standard streams and signal handling (the new image starts them afresh).
    """
    if sys.platform != "linux" or not sys.executable:  # no interpreter path to restart (embedded Python)
        return
    environment = tuned_environment(os.environ, _glibc_version(), _transparent_huge_pages_available())
    if environment is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
    except OSError as e:  # e.g. the interpreter is not executable here: run on, just without huge pages
        logging.warning("Could not restart with %s (%s); continuing with the default malloc.", TUNABLE, e)
