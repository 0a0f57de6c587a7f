"""pgvector filtered top-k on a real server equals exact brute force (ExactIndex)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.segmentation.retrieval import ExactIndex, ReferenceIndex
from rafss_core.store.engine import make_engine, session_factory
from rafss_core.store.vector import PgVectorIndex, index_name
from tests.integration.store.store_helpers import Library, add_slices, new_task

DIM = 64
N_TASKS = 10


@pytest.fixture(scope="module")
def libraries(db_session_factory: sessionmaker[Session]) -> list[Library]:
    """10 tasks; task 0 is small (12 slices: a selective filter), the others 60 each.

    Each task also holds noise that must never come back: other modality, other embedder,
    candidates, and a second embedding dimension.
    """
    rng = np.random.default_rng(1234)
    libs = []
    with db_session_factory.begin() as s:
        for t in range(N_TASKS):
            lib = new_task(s)
            add_slices(s, lib, rng.normal(size=(12 if t == 0 else 60, DIM)))
            add_slices(s, lib, rng.normal(size=(5, DIM)), modality="CT", record=False)
            add_slices(
                s, lib, rng.normal(size=(5, DIM)), embedder_id="other-embedder", record=False
            )
            add_slices(s, lib, rng.normal(size=(5, DIM)), approve=False)
            add_slices(s, lib, rng.normal(size=(5, 32)), embedder_id="small-embedder", record=False)
            libs.append(lib)
    return libs


@pytest.fixture(scope="module")
def index_only_engine(migrated_database_url: str) -> Iterator[Engine]:
    """An engine whose planner must use the HNSW index (no seq scan, no sort of a b-tree scan).

    Small test sets would otherwise be answered by the exact plan; this proves the HNSW path.
    """
    engine = make_engine(
        migrated_database_url,
        connect_args={"options": "-c enable_seqscan=off -c enable_sort=off"},
    )
    yield engine
    engine.dispose()


def _exact(lib: Library) -> ExactIndex:
    return ExactIndex(lib.keys, np.stack(lib.embeddings))


def _assert_same(got_index: ReferenceIndex, want: ExactIndex, queries: np.ndarray, k: int) -> None:
    got = got_index.search(queries, k)
    exp = want.search(queries, k)
    assert got.similarities.shape == exp.similarities.shape
    np.testing.assert_allclose(got.similarities, exp.similarities, atol=1e-5)
    assert got.keys == exp.keys


def test_pgvector_index_satisfies_the_protocol(
    db_session_factory: sessionmaker[Session], libraries: list[Library]
) -> None:
    index = PgVectorIndex(db_session_factory, libraries[3].task_id, "MR", "test-embedder")
    assert isinstance(index, ReferenceIndex)
    assert index.dim == DIM
    assert len(index) == 60


@pytest.mark.parametrize("task", [0, 3, 9])
def test_filtered_top_k_equals_brute_force(
    migrated_engine: Engine, libraries: list[Library], task: int
) -> None:
    lib = libraries[task]
    queries = np.random.default_rng(task).normal(size=(25, DIM))
    index = PgVectorIndex(migrated_engine, lib.task_id, "MR", "test-embedder")
    _assert_same(index, _exact(lib), queries, k=5)


@pytest.mark.parametrize("task", [0, 5])
def test_hnsw_path_equals_brute_force_and_returns_k_rows(
    index_only_engine: Engine, libraries: list[Library], task: int
) -> None:
    """Through the HNSW index with iterative scan: 1 task in 10 (task 0: 12 of ~700 rows)."""
    lib = libraries[task]
    queries = np.random.default_rng(100 + task).normal(size=(25, DIM))
    index = PgVectorIndex(index_only_engine, lib.task_id, "MR", "test-embedder", ef_search=1000)
    plan = index.explain(queries[0], k=10)
    assert index_name(DIM) in plan, plan
    _assert_same(index, _exact(lib), queries, k=10)


def test_selective_filter_still_returns_k_rows_with_default_ef_search(
    index_only_engine: Engine, libraries: list[Library]
) -> None:
    lib = libraries[0]  # 12 matching rows among ~700 in the graph
    queries = np.random.default_rng(5).normal(size=(20, DIM))
    index = PgVectorIndex(index_only_engine, lib.task_id, "MR", "test-embedder", ef_search=10)
    found = index.search(queries, k=10)
    assert index.exact_fallbacks == 0  # the iterative scan found them, not the fallback
    assert found.similarities.shape == (20, 10)
    assert all(len(set(row)) == 10 and set(row) <= set(lib.keys) for row in found.keys)
    # relaxed order is re-sorted exactly
    assert np.all(np.diff(found.similarities, axis=1) <= 1e-6)


def test_scan_limit_falls_back_to_exact_search(
    migrated_database_url: str, libraries: list[Library]
) -> None:
    """When the iterative scan stops early (hnsw.max_scan_tuples), results are still exact."""
    engine = make_engine(
        migrated_database_url,
        connect_args={
            "options": "-c enable_seqscan=off -c enable_sort=off -c hnsw.max_scan_tuples=1"
        },
    )
    try:
        lib = libraries[0]
        queries = np.random.default_rng(6).normal(size=(10, DIM))
        index = PgVectorIndex(engine, lib.task_id, "MR", "test-embedder", ef_search=1)
        _assert_same(index, _exact(lib), queries, k=10)
        assert index.exact_fallbacks == len(queries)
    finally:
        engine.dispose()


def test_other_dimension_has_its_own_index(
    migrated_engine: Engine, libraries: list[Library]
) -> None:
    with migrated_engine.connect() as conn:
        names = set(
            conn.execute(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'reference_slices'")
            ).scalars()
        )
    assert {index_name(DIM), index_name(32)} <= names
    index = PgVectorIndex(
        session_factory(migrated_engine), libraries[2].task_id, "MR", "small-embedder"
    )
    assert index.dim == 32 and len(index) == 5
    with pytest.raises(ValueError, match="query dimension 64 != index dimension 32"):
        index.search(np.ones(DIM), k=1)


def test_empty_index_says_what_to_do(migrated_engine: Engine, libraries: list[Library]) -> None:
    index = PgVectorIndex(migrated_engine, libraries[1].task_id, "US", "test-embedder")
    assert len(index) == 0
    with pytest.raises(LookupError, match="approve references"):
        index.search(np.ones(DIM), k=3)
