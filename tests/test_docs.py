"""Docs that are generated from code stay current."""
import os

from ppbackbone.benchmarks.figures import blank_figures
from ppbackbone.summary import MODELS_DOC_HEADER, models_table

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def test_models_md_is_current():
    with open(os.path.join(DOCS, "models.md"), encoding="utf-8") as f:
        # the measured chart between figure markers comes from tools/docs_figures.py, not from the registry
        assert blank_figures(f.read()).strip() == (MODELS_DOC_HEADER + models_table()).strip(), (
            "docs/models.md is stale: run python tools/summary.py --markdown > docs/models.md")
