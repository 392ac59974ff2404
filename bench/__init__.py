"""Benchmarks: `python -m bench.reports` measures how fast the hub takes incident reports."""
