"""`oodbench report`: Markdown + HTML reports from results files (per suite + library comparison)."""
from __future__ import annotations


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="markdown + HTML reports from results files (per suite + library comparison)")
    r.add_argument("--results", default="results", help="folder holding <suite>/results.csv.gz (default results)")
    r.add_argument("--out", default=None, help="where to write the reports (default: the --results folder)")
    r.add_argument("--suites", nargs="+", default=None, help="only these suite folders")
    r.add_argument("--no-comparison", action="store_true", help="skip the library comparison report")
    r.set_defaults(fn=run)


def run(a):
    from oodbench.benchmark.reporting import write_reports

    paths = write_reports(a.results, a.out, a.suites or None, comparison=not a.no_comparison)
    if not paths:
        print(f"no results found under {a.results}/ (expected <suite>/results.csv.gz)")
        return 1
    for p in paths:
        if p.suffix in (".md", ".html"):
            print(f"wrote {p}")
    return 0
