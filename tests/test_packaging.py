"""The installed package: one import name, resources inside it, no shadowing by a user's folders."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import hedgewatch

PROBE = """
import hedgewatch.alerts.render, hedgewatch.flows.hourly, hedgewatch.storage.store as store
from hedgewatch.demo import demo_data_dir, example_config
assert hedgewatch.flows.hourly.__file__.startswith(hedgewatch.__path__[0]), "flows shadowed"
assert sorted(p.name for p in demo_data_dir().glob("*.csv.gz")), "demo data missing"
assert example_config().is_file(), "example config missing"
assert [m.name for m in store.migrations()], "migrations missing"
hedgewatch.alerts.render._environment(None, slack=False).get_template("email.html.j2")
print("ok")
"""


def test_the_distribution_installs_one_top_level_import_name() -> None:
    files = metadata.files("hedgewatch") or []
    tops = {f.parts[0] for f in files if f.suffix == ".py" and f.parts[0] != ".."}
    assert tops == {"hedgewatch"}


def test_a_users_own_flows_alerts_and_transforms_packages_do_not_shadow_hedgewatch(
    tmp_path: Path,
) -> None:
    for name in ("flows", "alerts", "transforms", "sql"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('the user package')\n")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_python_dash_m_hedgewatch_is_the_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hedgewatch", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "backtest" in done.stdout and "replay" in done.stdout
    assert hedgewatch.__version__ != "0+unknown"


def test_report_without_the_report_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from hedgewatch.cli import app

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "plotly" else real_find_spec(name, *a),
    )
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "pip install 'hedgewatch[report]'" in result.output
    assert not (tmp_path / "r.html").exists()
