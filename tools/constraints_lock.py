"""constraints.txt: greet's runtime dependencies, pinned with hashes, and whether it is current.

`nox -s lock` resolves pyproject.toml's `[project] dependencies` for the Docker image's Python
(every platform at once, markers kept) and writes the result under a header made by `render`. The
header records a digest of what it was resolved from: the dependency list and that Python. The
default `nox` run's `lock_check` session calls `lock_problems`, which fails when either changed
since, or when a dependency's pin no longer satisfies it, so a stale lock never reaches the image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = ["DIGEST_PREFIX", "dependencies_digest", "lock_problems", "pinned_versions", "render"]

DIGEST_PREFIX = "# resolved-from-sha256: "


def dependencies_digest(dependencies: Iterable[str], python: str) -> str:
    """A digest of the requirement strings (normalized, order-free) and the target Python."""
    normalized = sorted(str(Requirement(dependency)) for dependency in dependencies)
    text = "\n".join([f"python {python}", *normalized])
    return hashlib.sha256(text.encode()).hexdigest()


def render(compiled: str, dependencies: Sequence[str], python: str) -> str:
    """The constraints.txt text: a header naming its source and digest, then `compiled`."""
    header = [
        "# greet's runtime dependencies, pinned with hashes: the Docker image installs exactly",
        "# these (`pip install --require-hashes -r constraints.txt`, then greet with --no-deps).",
        "# Written by `nox -s lock` from pyproject.toml's [project] dependencies, resolved for",
        f"# Python {python} (the Dockerfile's) on every platform; never edit by hand.",
        "# `nox -s lock_check` (part of `nox`) fails once pyproject.toml or that Python changes.",
        f"{DIGEST_PREFIX}{dependencies_digest(dependencies, python)}",
    ]
    return "\n".join(header) + "\n" + compiled.lstrip("\n")


def pinned_versions(lock_text: str) -> dict[str, Version]:
    """`name==version` lines of a pip requirements file (hashes, markers and comments aside)."""
    pins: dict[str, Version] = {}
    for line in lock_text.splitlines():
        if not line or line[0] in " \t#-":
            continue
        requirement = line.rstrip("\\").split(";")[0].strip()
        name, separator, version = requirement.partition("==")
        if not separator:
            continue
        try:
            pins[canonicalize_name(name.split("[")[0])] = Version(version.strip())
        except InvalidVersion:
            continue
    return pins


def lock_problems(lock_text: str, dependencies: Sequence[str], python: str) -> list[str]:
    """Why `lock_text` does not match `dependencies` resolved for `python`; [] when it does."""
    problems: list[str] = []
    digests = [line for line in lock_text.splitlines() if line.startswith(DIGEST_PREFIX)]
    if not digests:
        problems.append(f"it has no '{DIGEST_PREFIX.strip()}' line (not written by nox -s lock)")
    elif digests[0][len(DIGEST_PREFIX) :].strip() != dependencies_digest(dependencies, python):
        problems.append(
            f"pyproject.toml's dependencies or the Docker image's Python ({python}) changed "
            "since it was written"
        )
    pins = pinned_versions(lock_text)
    for dependency in dependencies:
        requirement = Requirement(dependency)
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement.name} is not pinned")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement.name}=={pinned} does not satisfy {requirement}")
    return problems
