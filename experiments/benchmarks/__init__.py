"""Benchmarks, ablations and profiling tools (see PERFORMANCE.md)."""
