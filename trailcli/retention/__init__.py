"""Retention: dropping the days older than a limit (`trail purge`, `trail collect --retention`),
after keeping their daily figures if asked.

It sits beside the collector, above presence and the reports, because the figures kept for a day
come from both (persons online from presence, visits and page views from the reports); the store
only drops partitions and stores the figures (trailcli/store/retention.py). The collector, which
may not use the reports, is handed `purge` by `trail collect`.
"""
