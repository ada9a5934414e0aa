"""Experiments that were measured and left out of minigrad (benchmarks/README.md, "Tried and left out")."""
