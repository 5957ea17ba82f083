"""Analyses of one detector's behaviour beyond the leaderboard metrics.

``oodbench analyse stattest --suite mnist`` (:mod:`oodbench.benchmark.cli.analyse`) runs
:func:`.stattest_analysis.analyse` and writes ``results/<suite>/analysis/stattest.{json,md}`` and its
PNG figures (:mod:`.figures`, :mod:`.document`). The detector is reached only through the registry and
the data only through a :class:`~oodbench.benchmark.evaluation.session.Session`.
"""
