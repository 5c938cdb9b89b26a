"""The operator's face: the `rewards` command (`main`), the demo and terminal tables.

Nothing outside this package imports it; domain modules never print.
"""
