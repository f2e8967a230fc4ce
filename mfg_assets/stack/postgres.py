"""The stack's databases on a running PostgreSQL: one role and one database per component."""

from __future__ import annotations

import re

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str) -> str:
    # names are ours (config), but never interpolate anything unchecked into DDL
    if not _NAME.match(name):
        raise ValueError(f"bad PostgreSQL identifier {name!r}")
    return f'"{name}"'


def ensure_database(admin_dsn: str, name: str, password: str) -> None:
    """Create role ``name`` (login, this password) and database ``name`` owned by it, if
    missing; reset the password so that it matches the stack's secrets."""
    import psycopg2

    try:
        con = psycopg2.connect(admin_dsn, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise RuntimeError(
            f"cannot reach PostgreSQL as the admin ({admin_dsn}): {exc}; "
            "set MFG_STACK_PG_ADMIN to a libpq DSN of a role that may create roles/databases"
        ) from exc
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(f"{verb} ROLE {_ident(name)} LOGIN PASSWORD %s", (password,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE {_ident(name)} OWNER {_ident(name)}")
    finally:
        con.close()


def drop_database(admin_dsn: str, name: str) -> None:
    """Remove the database and its role (tests; `stack down --purge`)."""
    import psycopg2

    con = psycopg2.connect(admin_dsn, connect_timeout=5)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
            cur.execute(f"DROP ROLE IF EXISTS {_ident(name)}")
    finally:
        con.close()
