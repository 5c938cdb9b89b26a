"""`rewards db upgrade [REVISION]`: migrate the database (alembic upgrade, default head)."""

from __future__ import annotations

import argparse

from rewards import db


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    db.upgrade(args.revision)
    print(f"database at {args.revision}")
    return 0


def add_commands(commands) -> None:
    """`rewards db upgrade`."""
    schema = commands.add_parser("db", help="database schema")
    actions = schema.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="migrate to the latest schema (alembic upgrade)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=cmd_db_upgrade)
