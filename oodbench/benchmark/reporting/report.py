"""Compatibility only: the names ``oodbench/benchmark/tools/ease.py`` imports from the former single
``report`` module. Import them from :mod:`oodbench.benchmark.reporting.leaderboard` and
:mod:`oodbench.benchmark.reporting.tables` instead; this module goes once ease.py does."""
from oodbench.benchmark.reporting.leaderboard import detector_costs
from oodbench.benchmark.reporting.tables import library_ease_rows, quality_rows

__all__ = ["detector_costs", "library_ease_rows", "quality_rows"]
