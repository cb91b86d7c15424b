"""The README's generated sections match the code, the package tree reads as the data path, and the
documentation stays a short front door whose links all resolve inside the repository."""

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from training.readme import DATA_PATH, PACKAGE, README, packages, rendered

REPO = README.parent
DOCS = REPO / "docs"
README_MAX_LINES = 220
# The README's first sections, in this order: what a newcomer reads before anything else.
FRONT_DOOR = ("## Quick start", "## What `make train` does", "## Time conventions", "## Configuration", "## Layout")

# [text](target) and ![alt](target), an optional "title" after the target; reference definitions [x]: target.
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
# A web address anywhere in the text (links, autolinks, bare); loopback addresses are examples, not links out.
WEB_ADDRESS = re.compile(r"https?://([A-Za-z0-9.\-]+)")
LOOPBACK = {"127.0.0.1", "localhost"}
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.DOTALL | re.MULTILINE)


def doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    """``text`` without its fenced code blocks (a ``# comment`` there is no heading, ``[a](b)`` no link)."""
    return FENCE.sub("", text)


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text (duplicates get -1, -2, ...)."""
    seen: Counter[str] = Counter()
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return anchors


def links(text: str) -> list[str]:
    prose = _prose(text)
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def _git_ignored(path: Path) -> bool:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return False
    return subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(path)], check=False).returncode == 0


def test_readme_generated_sections_match_the_code():
    text = README.read_text()
    assert rendered(text) == text, "README.md is stale: run `make docs`"
    assert "| `macd_signal` | momentum |" in text
    assert "| `training/ingestion/` |" in text


def test_the_layout_map_lists_every_package_once():
    assert sorted(DATA_PATH) == packages(), "training/readme.py DATA_PATH must list every package of training/"


def test_no_two_modules_share_a_name():
    names = Counter(p.stem for p in PACKAGE.rglob("*.py") if not p.stem.startswith("__"))
    shared = {name: count for name, count in names.items() if count > 1}
    assert not shared, f"module names used more than once under training/: {shared}"


def test_no_package_shares_a_name_with_a_module():
    modules = {p.stem for p in PACKAGE.rglob("*.py")}
    assert not modules & set(packages())


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail to docs/"
    )
    headings = [line for line in lines if line.startswith("## ")][: len(FRONT_DOOR)]
    assert len(headings) == len(FRONT_DOOR) and all(map(str.startswith, headings, FRONT_DOOR)), (
        f"README.md's first sections must be {FRONT_DOOR}, not {headings}"
    )
    assert DOCS.is_dir() and {"operations.md", "performance.md"} <= {p.name for p in DOCS.glob("*.md")}


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves_inside_the_repository(page: Path):
    text = page.read_text()
    broken = []
    for target in links(text):
        if re.match(r"[a-z][a-z0-9+.\-]*:", target, re.IGNORECASE):
            broken.append(f"{target}: leaves the repository")
            continue
        path_part, _, anchor = target.partition("#")
        file = (page.parent / path_part).resolve() if path_part else page
        if not file.is_relative_to(REPO.resolve()):
            broken.append(f"{target}: outside the repository")
        elif not file.exists():
            broken.append(f"{target}: no such file")
        elif _git_ignored(file):
            broken.append(f"{target}: git-ignored, so absent from a clone")
        elif anchor and file.suffix == ".md" and anchor not in github_anchors(file.read_text()):
            broken.append(f"{target}: no heading with that anchor in {file.relative_to(REPO.resolve())}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_web_address_leaves_the_repository(page: Path):
    hosts = {host for host in WEB_ADDRESS.findall(page.read_text()) if host not in LOOPBACK}
    assert not hosts, f"{page.relative_to(REPO)} points outside the repository: {sorted(hosts)}"


def test_the_link_checker_sees_what_it_must():
    text = (
        "# A `b`: c\n## A `b`: c\n```\n# not a heading [x](nowhere.md)\n```\n"
        "[up](../x.md) [s](https://e.org) [a](#a-b-c-1)\n"
    )
    assert github_anchors(text) == {"a-b-c", "a-b-c-1"}
    assert links(text) == ["../x.md", "https://e.org", "#a-b-c-1"]
    assert WEB_ADDRESS.findall(text) == ["e.org"]
