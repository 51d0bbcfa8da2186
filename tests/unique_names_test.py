"""pytest imports test modules by basename (rootdir "prepend" mode), so two test files may not share a name."""

import collections
import pathlib


def test_test_module_basenames_are_unique():
    tests_dir = pathlib.Path(__file__).resolve().parent
    names = collections.Counter(path.name for path in tests_dir.rglob("*.py") if path.name != "conftest.py")
    assert [name for name, count in names.items() if count > 1] == []
