"""What an installed gonogo (a wheel, the Docker image) holds: every file the code reads at run time."""

from __future__ import annotations

import glob
import tomllib
from pathlib import Path

from setuptools import find_namespace_packages

from github_app.commands import demo, sandbox, setup
from github_app.manifest import MANIFEST
from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _shipped() -> set[Path]:
    """The non-Python files a wheel built from pyproject.toml holds, found the way setuptools finds them."""
    options = PYPROJECT["tool"]["setuptools"]
    patterns = options["package-data"]
    packages = find_namespace_packages(where=str(ROOT), include=options["packages"]["find"]["include"])
    shipped = set()
    for package in packages:
        if not all(part.isidentifier() for part in package.split(".")):
            continue  # a folder such as demo_artifacts/green-tests is not a package: its files need a pattern of a parent
        folder = ROOT.joinpath(*package.split("."))
        for pattern in [*patterns.get("*", []), *patterns.get(package, [])]:
            shipped |= {folder / name for name in glob.glob(pattern, root_dir=folder, recursive=True)}
    return {path for path in shipped if path.is_file()}


def test_every_data_file_in_the_packages_is_shipped() -> None:
    data = {path for folder in ("github_app", "rules", "scorer") for path in (ROOT / folder).rglob("*")
            if path.is_file() and path.suffix not in (".py", ".pyc")}  # fmt: skip
    missing = sorted(str(path.relative_to(ROOT)) for path in data - _shipped())
    assert not missing, f"pyproject.toml's package-data leaves these out of the wheel: {missing}"


def test_app_yml_and_the_demo_scenario_are_read_from_the_package() -> None:
    package = ROOT / "github_app"
    for path in (MANIFEST, setup.MANIFEST, demo.DEMO_SCENARIO, sandbox.BUNDLED):
        assert path.resolve().is_relative_to(package), f"{path} is not inside the github_app package"
        assert path.resolve() in _shipped(), f"{path} is not in the wheel"
    assert (ROOT / "app.yml").resolve() == MANIFEST.resolve()  # the README's app.yml is the one that ships
