"""Tests of minigrad.nn: Module bookkeeping, layers against torch, and weight initialisation."""
