"""Benchmarks behind tools/benchmark.py (one module per mode; tests never time anything)."""
