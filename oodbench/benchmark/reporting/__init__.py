"""Reporting: leaderboards, tables, figures and documents built from results files only."""
