"""Benchmarks: each measures the project side by side with its reference in the same run."""
