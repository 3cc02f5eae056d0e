"""The README cannot drift: its command lines run, its synopses match the CLI, its demo timeline
is the demo's.

- Every line of every `console` block runs (in a sandbox holding a demo database, with `.venv/bin`
  pointing at the installed commands) and must exit 0 — unless an HTML comment right above the
  block says `readme-test: not run: <why>` (real venues, long-running servers).
- Every row of the "Command line" table names a real command, and each option it shows is in that
  command's --help.
- The "Alert timeline" block is, line for line, what `hedgewatch demo` prints.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hedgewatch.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
NOT_RUN = re.compile(r"<!--\s*readme-test:\s*not run:\s*(.+?)\s*-->\s*$")


def blocks(kind: str) -> list[tuple[str | None, list[str]]]:
    """(the not-run reason or None, lines) of each fenced block of `kind`."""
    found: list[tuple[str | None, list[str]]] = []
    lines = README.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != f"```{kind}":
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        above = lines[i - 1] if i else ""
        mark = NOT_RUN.match(above.strip())
        found.append((mark.group(1) if mark else None, lines[i + 1 : end]))
    return found


def command_lines() -> list[str]:
    """The commands of the blocks that run; in a block that shows a `$ ` prompt, only the
    prompted lines are commands (the rest is their output)."""
    commands = []
    for reason, lines in blocks("console"):
        if reason is not None:
            continue
        prompted = [line[2:] for line in lines if line.startswith("$ ")]
        for line in prompted or lines:
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.split("  #", 1)[0].strip())
    return commands


def test_every_console_block_is_run_or_says_why_not() -> None:
    reasons = [reason for reason, _ in blocks("console") if reason is not None]
    assert all(len(reason) > 10 for reason in reasons)
    assert command_lines(), "no README command line is run"


SYNOPSIS = re.compile(r"^\| `(hedgewatch [^`]+)` \|", re.M)


def synopses() -> list[str]:
    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    return [m.group(1).replace("\\|", "|") for m in SYNOPSIS.finditer(section)]


@pytest.mark.parametrize("synopsis", synopses())
def test_each_command_line_synopsis_matches_the_cli(synopsis: str) -> None:
    words = synopsis.split()[1:]
    command = []
    for word in words:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        command.append(word)
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, f"{' '.join(command)}: {result.output}"
    for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", synopsis):
        assert option in result.output, f"{synopsis}: {option} is not an option of it"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """A folder like a fresh clone after `make demo`: var/demo, sql/examples, .venv/bin."""
    from hedgewatch.demo import run_demo

    home = tmp_path_factory.mktemp("readme")
    printed: list[str] = []
    run_demo(workdir=home / "var" / "demo", echo=printed.append)
    (home / "demo-output.txt").write_text("\n".join(printed), encoding="utf-8")
    shutil.copytree(ROOT / "sql", home / "sql")
    shutil.copy(ROOT / "hedgewatch.example.toml", home)
    bin_dir = home / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("hedgewatch", "prefect", "python"):
        (bin_dir / name).symlink_to(BIN / name)
    # The duckdb CLI, as the README uses it: `duckdb -c SQL`, with the duckdb module.
    shim = bin_dir / "duckdb"
    shim.write_text(
        f"#!{sys.executable}\n"
        "import sys, duckdb\n"
        "assert sys.argv[1] == '-c'\n"
        "print(duckdb.sql(sys.argv[2]))\n"
    )
    shim.chmod(0o755)
    return home


@pytest.mark.slow
def test_every_readme_command_line_runs(sandbox: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{sandbox / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("HEDGEWATCH_CONFIG", None)
    for line in command_lines():
        done = subprocess.run(
            line, shell=True, cwd=sandbox, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"README line failed: {line}\n{done.stdout}\n{done.stderr}"


@pytest.mark.slow
def test_the_readme_timeline_is_what_the_demo_prints(sandbox: Path) -> None:
    printed = (sandbox / "demo-output.txt").read_text(encoding="utf-8").splitlines()
    start = printed.index("Alert timeline (hour of the candle that triggered it, UTC):")
    end = printed.index("", start)
    (documented,) = [
        lines for _, lines in blocks("text") if lines and lines[0].startswith("Alert timeline")
    ]
    assert documented == printed[start:end]
