"""Pictures and pages people would rather look at than read.

Exports :func:`pyplot` (matplotlib on the headless Agg backend), :func:`figure_png`,
:func:`sample_grid_png` (examples per class) and :func:`html_report` (a self-contained HTML page
of tables and PNGs, the reports that steps show in the ZenML dashboard and log to MLflow).
"""

from models.reporting.html import html_report, markdown_table_to_html
from models.reporting.plots import figure_png, pyplot, sample_grid_png, show_image

__all__ = [
    "figure_png",
    "html_report",
    "markdown_table_to_html",
    "pyplot",
    "sample_grid_png",
    "show_image",
]
