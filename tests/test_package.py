"""The built wheel stands on its own: bundled models, kiosk app and seed data, no build scripts.

The wheel is built from a clean copy of the checkout (so that no stale ``build/`` folder leaks
into it), then installed into a fresh virtual environment outside the checkout, with its
dependencies from the hashed lock, where ``palmpay demo`` must enroll the seed customers and pay.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from palmpay import assets
from palmpay.config import Settings

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.txt"
PIP_QUIET = ["--quiet", "--disable-pip-version-check"]
# Not copied for the build: local state, caches and earlier build output.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", ".work", "data", "build", "dist", "*.egg-info", "__pycache__",
    ".pytest_cache", ".ruff_cache", ".mypy_cache", "tmp",
)


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                            encoding="utf-8", timeout=timeout, check=False)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result


def _clean_env() -> dict[str, str]:
    """The environment without PALMPAY_* settings or a PYTHONPATH that could reach the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PALMPAY_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONIOENCODING": "utf-8"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCES)
    out = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", *PIP_QUIET, "--no-deps", "--no-build-isolation",
          ".", "-w", out], cwd=source)
    (built,) = out.glob("palmpay-*.whl")
    return built


def test_assets_resolve_in_the_checkout() -> None:
    # The editable install of the dev venv reads the files where they are in the repository.
    assert (assets.path("models") / "compcode.onnx").is_file()
    assert (assets.files("enrollment") / "enroll.html").is_file()
    assert (assets.path("seeds") / "customers.json").is_file()
    with pytest.raises(ValueError, match="no bundled folder"):
        assets.files("scripts")


def test_model_dir_defaults_to_the_bundled_models_and_can_be_overridden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PALMPAY_MODEL_DIR", raising=False)
    assert Settings().model_dir == assets.path("models")
    monkeypatch.setenv("PALMPAY_MODEL_DIR", str(tmp_path))
    assert Settings().model_dir == tmp_path


def test_wheel_carries_the_runtime_files_and_no_build_scripts_or_tests(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    data = "palmpay/_data/"
    expected = {
        *(f"{data}models/{p.name}" for p in (REPO / "models").iterdir()
          if p.suffix in (".onnx", ".json") or p.name.startswith("NOTICE")),
        *(f"{data}{p.relative_to(REPO).as_posix()}" for p in (REPO / "enrollment").rglob("*")
          if p.suffix in (".html", ".js", ".css", ".svg")),
        f"{data}seeds/customers.json",
        f"{data}seeds/checkout.mp4",
        *(f"{data}{p.relative_to(REPO).as_posix()}"
          for p in (REPO / "seeds" / "gallery").glob("*/*.jpg")),
    }
    assert f"{data}models/compcode.onnx" in expected
    assert expected <= names, sorted(expected - names)
    # Nothing else under palmpay/_data: no build script (models/*.py, seeds/*.py) as a module
    # or as data, no README.
    assert sorted(n for n in names if n.startswith(data) and n not in expected) == []
    assert [n for n in names if n.endswith(".py") and ("build_" in n or "calibrate" in n)] == []
    assert [n for n in names if n.startswith(("tests/", "models/", "seeds/", "scripts/"))] == []
    # Every palmpay package of the checkout is in the wheel ([tool.setuptools] packages).
    packages = {p.relative_to(REPO).as_posix() for p in (REPO / "palmpay").rglob("__init__.py")}
    assert packages <= names, sorted(packages - names)


@pytest.mark.slow
def test_demo_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    env = _clean_env()
    _run([python, "-m", "pip", "install", *PIP_QUIET, "--no-deps", "--require-hashes",
          "--only-binary=:all:", "-r", LOCK], cwd=tmp_path, env=env)
    _run([python, "-m", "pip", "install", *PIP_QUIET, "--no-deps", wheel], cwd=tmp_path, env=env)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env["PALMPAY_DATA_DIR"] = str(tmp_path / "state")

    # palmpay and its bundled files come from the venv, not from the checkout.
    where = _run([python, "-c", "import json, palmpay, palmpay.assets as a; print(json.dumps("
                  "[palmpay.__file__, *(str(a.path(n)) for n in a.ASSET_DIRS)]))"],
                 cwd=run_dir, env=env)
    for path in json.loads(where.stdout):
        assert Path(path).is_relative_to(venv), path

    demo = _run([venv / "bin" / "palmpay", "demo", "--no-serve", "--port", "0",
                 "--data-dir", tmp_path / "state" / "demo"], cwd=run_dir, env=env, timeout=300)
    out = demo.stdout
    seeds = json.loads((REPO / "seeds" / "customers.json").read_text())
    for customer in seeds["customers"]:
        assert f"enrolled {customer['name']}" in out, out
    assert "PAID 12.50 EUR — Grace Hopper" in out and "REFUSED 8.99 EUR" in out, out
    assert not (run_dir / "data").exists()  # the demo kept its state where it was told
