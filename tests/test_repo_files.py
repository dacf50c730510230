"""The files a user looks for at the top of the repository: LICENSE and CHANGELOG.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pyproject_field(name: str) -> str:
    match = re.search(rf'^{name} = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert match is not None, name
    return match.group(1)


def test_the_license_file_is_the_mit_license_that_pyproject_declares() -> None:
    assert pyproject_field("license") == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} greet contributors$", text, re.M)
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_the_changelog_keeps_a_changelog_with_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "[Keep a Changelog](https://keepachangelog.com/" in text
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert headings[0] == ("Unreleased", "")
    released = [version for version, date in headings[1:] if date]
    assert len(released) == len(headings) - 1  # every release has its date
    assert pyproject_field("version") in released
    sections = set(re.findall(r"^### (\w+)$", text, re.M))
    assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
