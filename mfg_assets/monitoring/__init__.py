"""Monitoring room: cost accounting and the operations dashboard (plain Python, no Dagster)."""
