"""Rewards engine: XP, streaks, tasks and leaderboards, applied exactly once by Celery workers."""
