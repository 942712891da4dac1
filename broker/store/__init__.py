"""Persistence: SQLAlchemy 2 Core tables, Alembic migrations, repositories.

SQLite is the embedded default; PostgreSQL by URL for production and multi-replica use.
No secret is ever written here: grants keep accessors, lease ids and keyed fingerprints.
"""
