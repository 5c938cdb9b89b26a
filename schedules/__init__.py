"""Periodic maintenance jobs and the beat schedule that runs them."""
