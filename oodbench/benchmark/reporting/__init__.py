"""Reports built from results files alone: one Markdown report and one self-contained HTML page per
suite, and one library comparison.

    oodbench report                      # every results/<suite>/ that has a results table, + comparison
    oodbench report --results DIR --out DIR --suites mnist

    from oodbench.benchmark.reporting import write_reports
    write_reports("results")             # the same from Python; returns the written paths

Inputs per suite (written by ``oodbench run``): ``results.csv.gz``, ``run.json`` and ``curves.json.gz``; and,
when present, ``<results>/ease/ease.json`` (``oodbench ease``) for the ease-of-use, cost, robustness
and code-quality tables. Nothing else is read: no scores, no models, no registry, so a report can be
regenerated on any machine and diffed.

Outputs: ``<out>/<suite>/report.md``, ``<out>/<suite>/report.html`` (images embedded as base64 PNG,
inline CSS and a small inline script that sorts a table by the clicked column; no external resources),
``<out>/<suite>/figures/*.png``; ``<out>/comparison.md`` and ``<out>/comparison.html``.

Output is deterministic: everything is sorted, floats are formatted, PNGs carry no software or date
metadata and the page contains no generation time (only the run's own timestamp from run.json), so
regenerating from the same files gives byte-identical files.

Where things are:

* :mod:`.loading`: reading a results folder (:class:`SuiteResults`, ease.json);
* :mod:`.leaderboard`: the one leaderboard table, and ``leaderboard.md`` (written by ``oodbench run``);
* :mod:`.tables`: the other tables (per test set, accuracy, ease of use, code quality);
* :mod:`.formatting`: how numbers are written; :mod:`.figures`: the PNG figures;
* :mod:`.documents`: the Markdown + HTML document builder and ``template.html``;
* :mod:`.suite_report` and :mod:`.comparison`: the two kinds of report, one function per section.
  A new report section is a new function there.
"""
from __future__ import annotations

from pathlib import Path

from oodbench.benchmark.reporting.comparison import comparison_report
from oodbench.benchmark.reporting.documents import write_doc
from oodbench.benchmark.reporting.leaderboard import leaderboard, leaderboard_markdown
from oodbench.benchmark.reporting.loading import SuiteResults, find_suites, load_ease
from oodbench.benchmark.reporting.suite_report import suite_report

__all__ = ["write_reports", "SuiteResults", "leaderboard", "leaderboard_markdown", "suite_report",
           "comparison_report"]


def write_reports(results_dir="results", out_dir=None, suites=None, comparison: bool = True) -> list[Path]:
    """Build every report from the results under ``results_dir`` into ``out_dir`` (default: the same
    folder). ``suites``: folder names to restrict to; ``comparison``: also write the library
    comparison. Returns the written paths (figures, .md and .html files)."""
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir else results_dir
    ease = load_ease(results_dir)
    if ease:
        ease["_path"] = "results/ease/ease.json"
    loaded = []
    for folder in find_suites(results_dir):
        if suites and folder.name not in suites:
            continue
        loaded.append(SuiteResults(folder))
    written = []
    for res in loaded:
        written += write_doc(suite_report(res, ease), out_dir / res.folder.name, "report")
    if comparison and (loaded or ease):
        written += write_doc(comparison_report(loaded, ease or {}), out_dir, "comparison")
    return written
