"""The README's feature list is generated from the definition table, never edited by hand."""

from training.readme import README, rendered


def test_readme_feature_list_matches_the_definition_table():
    text = README.read_text()
    assert rendered(text) == text, "README.md feature list is stale: run `make docs`"
    assert "| `macd_signal` | momentum |" in text
