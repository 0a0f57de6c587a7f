"""pgvector search over approved reference slices: the Postgres ``ReferenceIndex``.

Index layout. ``reference_slices.embedding`` is an untyped ``vector`` (dimensions vary by
embedder, see :mod:`rafss_core.store.models`). For each dimension ``d`` in use there is one
partial expression HNSW index with cosine distance, created on demand by
:func:`ensure_vector_index`::

    CREATE INDEX ix_reference_slices_embedding_hnsw_d768 ON reference_slices
      USING hnsw ((embedding::vector(768)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
      WHERE embedding_dim = 768 AND state = 'approved'

Only approved slices are in the graph, so candidates and revoked slices can never come back
from the index, and the graph is no bigger than what can be retrieved.

Filtered top-k. Queries filter by task, modality and embedder on top of the index. A plain HNSW
scan collects ``hnsw.ef_search`` candidates and *then* applies the filter, so a selective filter
(one task among many) returns fewer than k rows. We chose pgvector >= 0.8's iterative scan
(``SET LOCAL hnsw.iterative_scan = relaxed_order``) over a partial index per task:

- tasks are created at run time by admins; a per-task index would mean DDL on every task
  creation, one graph per (task, dimension), and literal task ids in the SQL so the planner can
  match the index predicate;
- with one graph per dimension, the iterative scan keeps walking the graph until k rows pass the
  filter (or ``hnsw.max_scan_tuples`` is reached), which the benchmark shows is fast enough at
  10% selectivity (``benchmarks/vector_search.py``);
- ``relaxed_order`` may return rows slightly out of order, so the rows are re-sorted exactly by
  distance in an outer query (the documented pgvector pattern, a ``MATERIALIZED`` CTE);
- if the scan still returns fewer than k rows (extremely selective filter, scan limit reached),
  we fall back to an exact scan over the filtered rows (the ``(task, modality, embedder)``
  b-tree), which returns ``min(k, n)`` rows. So callers always get ``min(k, n)`` rows.

For small reference sets the planner usually picks the exact b-tree + sort plan by itself, which
is exact and fast; the HNSW path takes over as sets grow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.segmentation.retrieval import Neighbours, l2_normalise

INDEX_PREFIX = "ix_reference_slices_embedding_hnsw_d"
MAX_HNSW_DIM = 2000  # pgvector's HNSW limit for `vector` (4000 for `halfvec`)
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 64
DEFAULT_EF_SEARCH = 100


def index_name(dim: int) -> str:
    return f"{INDEX_PREFIX}{dim}"


def _check_dim(dim: int) -> int:
    dim = int(dim)
    if not 1 <= dim <= MAX_HNSW_DIM:
        raise ValueError(f"embedding dimension {dim} is outside 1..{MAX_HNSW_DIM} (pgvector HNSW)")
    return dim


def ensure_vector_index(
    conn: Connection,
    dim: int,
    *,
    m: int = DEFAULT_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
) -> str:
    """Create the HNSW index for ``dim`` if missing (idempotent, safe under concurrency).

    Runs in the caller's transaction; the first call for a new dimension briefly locks
    ``reference_slices`` against writes while the (then small) index is built.
    """
    dim = _check_dim(dim)
    name = index_name(dim)
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    conn.execute(
        sa.text(
            f"CREATE INDEX IF NOT EXISTS {name} ON reference_slices "
            f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) "
            f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
            f"WHERE embedding_dim = {dim} AND state = 'approved'"
        )
    )
    return name


def _search_sql(dim: int, *, exact: bool) -> sa.TextClause:
    # `dim` is an int validated by _check_dim; it must be a literal for the planner to match the
    # partial index predicate and the expression index. Everything else is a bound parameter.
    if exact:
        # the untyped expression does not match the HNSW index: b-tree filter + exact sort
        distance = "(embedding <=> CAST(:q AS vector))"
    else:
        distance = f"(embedding::vector({dim}) <=> CAST(:q AS vector({dim})))"
    sql = f"""
        WITH candidates AS MATERIALIZED (
            SELECT id, {distance} AS distance
            FROM reference_slices
            WHERE embedding_dim = {dim} AND state = 'approved'
              AND task_id = :task_id AND modality = :modality AND embedder_id = :embedder_id
            ORDER BY {distance}
            LIMIT :k
        )
        SELECT id, distance FROM candidates ORDER BY distance, id
    """
    return sa.text(sql).bindparams(sa.bindparam("q", type_=Vector()))


class PgVectorIndex:
    """Filtered top-k over approved reference slices of one (task, modality, embedder).

    Satisfies :class:`rafss_core.segmentation.retrieval.ReferenceIndex`; keys are reference
    slice ids as strings, similarities are cosine similarities (``1 - cosine distance``).
    """

    def __init__(
        self,
        bind: Engine | sessionmaker[Session],
        task_id: int,
        modality: str,
        embedder_id: str,
        *,
        ef_search: int = DEFAULT_EF_SEARCH,
        dim: int | None = None,
    ) -> None:
        self._bind = bind
        self.task_id = int(task_id)
        self.modality = modality
        self.embedder_id = embedder_id
        self.ef_search = int(ef_search)
        self._dim = _check_dim(dim) if dim is not None else None
        # queries answered by the exact fallback (the iterative scan returned < k rows); a
        # steadily growing count means hnsw.max_scan_tuples is too low for the filter
        self.exact_fallbacks = 0

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if isinstance(self._bind, Engine):
            with self._bind.connect() as conn, conn.begin():
                yield conn
        else:
            with self._bind.begin() as session:
                yield session.connection()

    def _params(self) -> dict[str, object]:
        return {"task_id": self.task_id, "modality": self.modality, "embedder_id": self.embedder_id}

    @property
    def dim(self) -> int:
        if self._dim is None:
            with self._connection() as conn:
                found = conn.execute(
                    sa.text(
                        "SELECT embedding_dim FROM reference_slices WHERE state = 'approved' "
                        "AND task_id = :task_id AND modality = :modality "
                        "AND embedder_id = :embedder_id LIMIT 1"
                    ),
                    self._params(),
                ).scalar_one_or_none()
            if found is None:
                raise LookupError(self._empty_message())
            self._dim = int(found)
        return self._dim

    def __len__(self) -> int:
        with self._connection() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM reference_slices WHERE state = 'approved' "
                        "AND task_id = :task_id AND modality = :modality "
                        "AND embedder_id = :embedder_id"
                    ),
                    self._params(),
                ).scalar_one()
            )

    def _empty_message(self) -> str:
        return (
            f"no approved reference slices for task {self.task_id}, modality {self.modality}, "
            f"embedder {self.embedder_id}: approve references for this task first"
        )

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        if k < 1:
            raise ValueError("k must be >= 1")
        q = l2_normalise(np.atleast_2d(queries))
        dim = self.dim
        if q.shape[1] != dim:
            raise ValueError(f"query dimension {q.shape[1]} != index dimension {dim}")
        approx_sql = _search_sql(dim, exact=False)
        exact_sql = _search_sql(dim, exact=True)
        keys: list[list[str]] = []
        sims: list[list[float]] = []
        with self._connection() as conn:
            self._configure_scan(conn)
            for row in q:
                params = {**self._params(), "q": row, "k": k}
                rows = conn.execute(approx_sql, params).all()
                if len(rows) < k:
                    # the iterative scan hit hnsw.max_scan_tuples: answer exactly instead
                    rows = conn.execute(exact_sql, params).all()
                    self.exact_fallbacks += 1
                keys.append([str(r.id) for r in rows])
                sims.append([1.0 - float(r.distance) for r in rows])
        # every query sees the same approved set, so widths agree; truncate defensively in case
        # a reference was revoked between two queries of this batch
        width = min(len(r) for r in keys)
        if width == 0:
            raise LookupError(self._empty_message())
        return Neighbours(
            [r[:width] for r in keys],
            np.asarray([s[:width] for s in sims], dtype=np.float32).reshape(len(keys), width),
        )

    def _configure_scan(self, conn: Connection) -> None:
        """Transaction-local HNSW settings: iterative scan (filtered top-k) and ef_search."""
        conn.execute(
            sa.text(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('hnsw.ef_search', :ef, true)"
            ),
            {"ef": str(self.ef_search)},
        )

    def explain(self, query: np.ndarray, k: int) -> str:
        """The executed plan of one search (``EXPLAIN ANALYZE``), for operators and tests."""
        q = l2_normalise(np.atleast_2d(query))[0]
        sql = _search_sql(self.dim, exact=False)
        with self._connection() as conn:
            self._configure_scan(conn)
            explained = sa.text("EXPLAIN (ANALYZE, COSTS OFF) " + str(sql.text)).bindparams(
                sa.bindparam("q", type_=Vector())
            )
            plan = conn.execute(explained, {**self._params(), "q": q, "k": k}).scalars().all()
        return "\n".join(plan)
