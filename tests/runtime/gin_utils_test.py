"""gin_utils.scoped_config: one gin configuration per `with` block, cleared after it, never nested."""

import gin
import pytest

from class_jax.runtime import gin_utils
from class_jax.runtime.errors import UserError


@gin.configurable("gin_utils_test.echo")
def echo(value=None, other=None):
    return value, other


@pytest.fixture(autouse=True)
def _clear_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(name="gin_file")
def _gin_file(tmp_path):
    path = tmp_path / "echo.gin"
    path.write_text("X = 3\ngin_utils_test.echo.value = %X\n")
    return path


def test_the_configuration_holds_inside_the_block_and_is_cleared_after(gin_file):
    with gin_utils.scoped_config([str(gin_file)], ["X = 5"]) as yielded:
        assert yielded is None
        assert gin_utils.holds_config()
        assert gin.query_parameter("%X") == 5
        assert gin_utils.run_configured(echo) == (5, None)
    assert not gin_utils.holds_config()
    assert echo() == (None, None)


def test_an_exception_in_the_block_still_clears(gin_file):
    with pytest.raises(KeyError, match="boom"):
        with gin_utils.scoped_config([str(gin_file)]):
            raise KeyError("boom")
    assert not gin_utils.holds_config()


def test_a_bad_binding_is_a_user_error_and_leaves_gin_cleared(gin_file):
    with pytest.raises(UserError, match="gin configuration"):
        with gin_utils.scoped_config([str(gin_file)], ["gin_utils_test.echo.no_such_parameter = 1"]):
            pytest.fail("the block must not run")
    assert not gin_utils.holds_config()
    with pytest.raises(UserError, match="missing.gin"):
        with gin_utils.scoped_config(["missing.gin"]):
            pytest.fail("the block must not run")
    assert not gin_utils.holds_config()


def test_nesting_is_refused_and_the_outer_configuration_survives(gin_file):
    with gin_utils.scoped_config([str(gin_file)]):
        with pytest.raises(RuntimeError, match="nested gin scopes are refused"):
            with gin_utils.scoped_config([str(gin_file)], ["X = 7"]):
                pytest.fail("the inner block must not run")
        assert gin.query_parameter("%X") == 3
    assert not gin_utils.holds_config()


def test_a_configuration_parsed_outside_any_scope_is_refused_not_replaced(gin_file):
    gin_utils.parse_gin([str(gin_file)], [])
    with pytest.raises(RuntimeError, match="already holds a parsed configuration"):
        with gin_utils.scoped_config([str(gin_file)], ["X = 7"]):
            pytest.fail("the block must not run")
    assert gin.query_parameter("%X") == 3


def test_files_are_found_on_the_project_search_paths(tmp_path, gin_file):
    del gin_file  # writes tmp_path/echo.gin
    # The installed gin folder (what `--gin_file=demo/common.gin` finds) ...
    with gin_utils.scoped_config(["demo/common.gin"], ["VOCAB_PATH = '/v'"]):
        assert gin.query_parameter("%NUM_PASSAGES") == 4
    # ... and extra search paths, for the files and their includes.
    (tmp_path / "outer.gin").write_text("include 'echo.gin'\nX = 9\n")
    with gin_utils.scoped_config(["outer.gin"], extra_search_paths=str(tmp_path)):
        assert gin_utils.run_configured(echo) == (9, None)


def test_configured_argument_evaluates_macros_and_inherits_scopes(tmp_path):
    (tmp_path / "scoped.gin").write_text(
        "K = 4\nLENGTHS = {'passage_tokens': (%K, 64)}\n"
        "gin_utils_test.echo.value = %LENGTHS\n"
        "train/gin_utils_test.echo.other = @gin_utils_test.echo()\n")
    with gin_utils.scoped_config([str(tmp_path / "scoped.gin")], ["K = 8"]):
        assert gin_utils.configured_argument("train/gin_utils_test.echo", "value") == {"passage_tokens": (8, 64)}
        assert gin_utils.configured_argument("gin_utils_test.echo", "value") == {"passage_tokens": (8, 64)}
        with pytest.raises(UserError, match="nothing bound to gin_utils_test.echo.other"):
            gin_utils.configured_argument("gin_utils_test.echo", "other")
        with pytest.raises(UserError, match="nothing bound"):
            gin_utils.configured_argument("gin_utils_test.no_such_configurable", "value")
