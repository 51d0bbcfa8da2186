"""Tests of class_jax.runtime.host_malloc: when the process re-executes with huge-page malloc, and that it really does."""

import os
import subprocess
import sys

import pytest

from class_jax.runtime import host_malloc

SUPPORTED = dict(glibc_version=(2, 36), huge_pages_available=True)


def test_adds_the_tunable_where_supported():
    tuned = host_malloc.tuned_environment({"PATH": "/bin"}, **SUPPORTED)
    assert tuned == {"PATH": "/bin", "GLIBC_TUNABLES": host_malloc.TUNABLE}


def test_keeps_the_users_other_tunables():
    tuned = host_malloc.tuned_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, **SUPPORTED)
    assert tuned["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{host_malloc.TUNABLE}"


@pytest.mark.parametrize("environ, glibc_version, huge_pages", [
    ({host_malloc.OPT_OUT_VARIABLE: "0"}, (2, 36), True),  # opted out
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, (2, 36), True),  # the user chose otherwise
    ({"GLIBC_TUNABLES": host_malloc.TUNABLE}, (2, 36), True),  # already re-executed: no loop
    ({}, (2, 34), True),  # glibc before the tunable existed
    ({}, None, True),  # not glibc (e.g. musl)
    ({}, (2, 36), False),  # transparent huge pages set to never
])
def test_keeps_the_environment(environ, glibc_version, huge_pages):
    assert host_malloc.tuned_environment(environ, glibc_version, huge_pages) is None


def test_reads_the_kernels_huge_page_setting(tmp_path):
    setting = tmp_path / "enabled"
    setting.write_text("always [madvise] never\n")
    assert host_malloc._transparent_huge_pages_available(setting)
    setting.write_text("always madvise [never]\n")
    assert not host_malloc._transparent_huge_pages_available(setting)
    assert not host_malloc._transparent_huge_pages_available(tmp_path / "missing")


def test_the_process_reexecutes_itself_with_the_tunable():
    environ = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", host_malloc.OPT_OUT_VARIABLE)}
    expected = host_malloc.tuned_environment(environ, host_malloc._glibc_version(),
                                             host_malloc._transparent_huge_pages_available())
    if sys.platform != "linux" or expected is None:
        pytest.skip("huge-page malloc is not available on this machine")
    script = ("import os, sys; from class_jax.runtime import host_malloc; print(os.getpid(), flush=True); "
              "host_malloc.reexec_with_huge_page_malloc(); print(os.getpid(), os.environ['GLIBC_TUNABLES'], sys.argv)")
    result = subprocess.run([sys.executable, "-c", script, "extra-argument"], env=environ, capture_output=True,
                            text=True, check=True, timeout=120)
    # The script starts twice (the second time after exec), in the same process.
    first_start, second_start, after = result.stdout.splitlines()
    pid, tunables, argv = after.split(" ", 2)
    assert first_start == second_start == pid
    assert tunables == host_malloc.TUNABLE
    assert argv == "['-c', 'extra-argument']"


def test_a_failed_restart_runs_on(monkeypatch):
    monkeypatch.setattr(host_malloc.sys, "platform", "linux")
    monkeypatch.setattr(host_malloc, "tuned_environment", lambda *args: {"GLIBC_TUNABLES": host_malloc.TUNABLE})

    def failing_execve(*args):
        raise PermissionError("not executable")

    monkeypatch.setattr(host_malloc.os, "execve", failing_execve)
    host_malloc.reexec_with_huge_page_malloc()  # returns instead of raising
