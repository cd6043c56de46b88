"""The docs read the rule table: the builtins table in docs/language.md is generated from it."""

from pathlib import Path

from tpcompile.kernels.closed_forms.cases import markdown_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"


def test_language_doc_builtins_table_is_current() -> None:
    text = DOC.read_text()
    start = text.index("<!-- rules-table -->\n") + len("<!-- rules-table -->\n")
    end = text.index("<!-- /rules-table -->")
    regenerate = "regenerate: python -m tpcompile.kernels.closed_forms.cases"
    assert text[start:end] == markdown_table(), regenerate
