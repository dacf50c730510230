"""The package declares what it imports: `pip install .` alone must give a working server."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import greet

PACKAGE_DIR = Path(greet.__file__).parent
OWN_MODULES = {"greet", "greet_service"}


def imported_top_level_modules() -> set[str]:
    """Top-level modules imported anywhere in the installed greet package (not its tests)."""
    names: set[str] = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - OWN_MODULES - set(sys.stdlib_module_names)


def requirement_names(distribution: str, extra: str = "") -> set[str]:
    """Names of the distributions `distribution` requires on this platform (markers evaluated),
    with those of its `extra` if one is named."""
    from packaging.requirements import Requirement

    names = set()
    for text in importlib.metadata.requires(distribution) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
            names.add(normalize(requirement.name))
    return names


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_closure(root: str, extra: str = "") -> set[str]:
    """`root` (with its `extra`, if named) and everything it requires, transitively."""
    seen: set[str] = set()
    pending = [normalize(root)]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(requirement_names(name, extra if name == normalize(root) else "") - seen)
    return seen


EXTRA_MODULES = {"opentelemetry": "otel"}
"""Modules that come from an extra: imported only when it is installed and in use (tracing;
tests/test_tracing.py checks that a server without it never imports them)."""


def test_every_imported_module_comes_from_a_declared_dependency() -> None:
    provided_by = importlib.metadata.packages_distributions()
    closure = installed_closure("greet")
    extras = {module: installed_closure("greet", extra) for module, extra in EXTRA_MODULES.items()}
    missing = {
        module: provided_by.get(module, ["?"])
        for module in imported_top_level_modules()
        if not any(
            normalize(dist) in extras.get(module, closure) for dist in provided_by.get(module, [])
        )
    }
    assert not missing, f"imported but not required by greet's dependencies: {missing}"
    assert {"betterproto", "grpclib", "google", "h2"} <= imported_top_level_modules()


def test_the_wheel_installs_greet_and_greet_service_only(tmp_path: Path) -> None:
    """The wheel holds `greet` and the generated code under the proto package's name,
    `greet_service` (typed: py.typed); never a top-level package named `generated`, a name
    other projects use."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("greet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert top_level == {"greet", "greet_service"}
    assert "greet_service/py.typed" in names
    assert "greet_service/descriptor_set.binpb" in names  # reflection's descriptor set
