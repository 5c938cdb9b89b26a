"""The chaos harness: `make chaos` (python -m chaos); see chaos/run.py."""
