"""Benchmark machinery used by benchmarks/run.py: servers, load, phases, report."""
