"""Self-contained HTML reports: tables, pictures and text."""

from models.reporting.html import html_report, markdown_table_to_html


def test_html_report_embeds_tables_pictures_and_text() -> None:
    page = html_report(
        "t <1>",
        [
            ("table", "| a | b |\n|---|---|\n| 1 | <x> |\n"),
            ("picture", b"\x89PNGdata"),
            ("note", "plain & text"),
        ],
    )
    assert page.count("<h2>") == 3
    assert "<td>&lt;x&gt;</td>" in page  # cells are escaped
    assert "data:image/png;base64,iVBOR" in page
    assert "<pre>plain &amp; text</pre>" in page
    assert "<title>t &lt;1&gt;</title>" in page


def test_markdown_table_skips_the_separator_row() -> None:
    html = markdown_table_to_html("| x | y |\n|:--|--:|\n| 1 | 2 |")
    assert html == "<table><tr><th>x</th><th>y</th></tr><tr><td>1</td><td>2</td></tr></table>"
