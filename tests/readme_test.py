"""README's two first commands and what CI runs must stay the same; the CLI must list what the README promises."""

import pathlib
import re
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md must start with a bash block of two commands"
    return [line.strip() for line in block.group(1).strip().splitlines()]


def test_ci_runs_the_readme_install_and_test_commands():
    install, test = _readme_commands()
    ci = (REPO_ROOT / ".ci" / "run").read_text().replace(" --quiet", "")
    pip_install = re.search(r"pip install -e \S+", install).group(0)
    assert pip_install in ci
    assert test in ci


def test_cli_lists_every_command_the_readme_uses():
    help_text = subprocess.run([sys.executable, "-m", "class_jax.cli", "--help"], capture_output=True, text=True,
                               check=True).stdout
    readme = (REPO_ROOT / "README.md").read_text()
    # Commands in code blocks, and in table rows the README marks as working (pending ones are listed as such).
    used = "\n".join(re.findall(r"```bash\n(.*?)```", readme, re.S))
    used += "\n".join(line for line in readme.splitlines() if line.startswith("|") and "| works" in line)
    for command in sorted(set(re.findall(r"class-jax ([a-z][a-z-]+)", used))):
        assert f"  {command} " in help_text, f"README uses `class-jax {command}` but the CLI lacks it"
