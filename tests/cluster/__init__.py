"""Tests against a real SLURM (a package: its conftest.py is not the suite's)."""
