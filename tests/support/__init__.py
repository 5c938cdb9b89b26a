"""Helpers shared by the test tiers; no fixtures, no conftest imports."""
