"""The README's generated sections match the code, and the package tree reads as the data path."""

from collections import Counter

from training.readme import DATA_PATH, PACKAGE, README, packages, rendered


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
