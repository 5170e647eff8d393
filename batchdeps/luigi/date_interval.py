"""Luigi's `luigi.date_interval`: batchdeps' own date intervals (Date, Week, Month, Year,
Custom), under Luigi's module name."""

from __future__ import annotations

from ..date_interval import Custom, Date, DateInterval, Month, Week, Year

__all__ = ["Custom", "Date", "DateInterval", "Month", "Week", "Year"]
