"""The embedded default: the same ledger code on a fresh SQLite file per test, no server needed.

Jobs are applied by calling the write side directly, one transaction each;
queue behaviour is tested against the real broker in tests/integration.
"""
