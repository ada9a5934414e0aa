"""Benchmarks of minigrad against PyTorch on the same machine: ``python -m benchmarks`` (see README.md)."""
