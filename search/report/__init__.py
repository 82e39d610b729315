"""Study reports: final evaluations, analyses as plain data, figures, Markdown, summary.json and the exported model.

    analysis.py  computes (pure functions of the study and the evaluations)
    markdown.py  renders report.md from that data (the search and final-evaluation sections)
    experiments.py  its sections on what the trials show (effects, imbalance, n-grams, robustness, issues)
    text.py      formats numbers, seeds, tables and images for both
    build.py     runs it: evaluate, compute, draw, render, summarise, export
    cli.py       python -m search.report TASK
"""
from .analysis import find_issues, mean_std
from .build import ReportConfig, ReportError, build
from .cli import main
from .markdown import render, search_cell

__all__ = ["ReportConfig", "ReportError", "build", "find_issues", "main", "mean_std", "render", "search_cell"]
