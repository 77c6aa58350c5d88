"""Benchmarks; each module is runnable with `python -m bench.<name>` and records its results
under bench/results/."""
