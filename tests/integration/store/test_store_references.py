"""Reference curation on a real server: states, revoked slices never retrieved (the audit rows
are the use cases', see tests/integration/app)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import ReferenceState
from rafss_core.store.models import ReferenceSet, ReferenceSlice
from rafss_core.store.repositories import (
    InvalidTransitionError,
    approve_reference_slice,
    create_reference_set,
    load_reference_slices,
    revoke_reference_slice,
)
from rafss_core.store.vector import PgVectorIndex
from tests.integration.store.store_helpers import ACTOR, add_slices, new_task

DIM = 16


def test_revoked_reference_is_never_retrieved(db_session_factory: sessionmaker[Session]) -> None:
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(20, DIM)).astype(np.float32)
    with db_session_factory.begin() as s:
        lib = new_task(s)
        keys = add_slices(s, lib, emb)
    index = PgVectorIndex(db_session_factory, lib.task_id, "MR", "test-embedder")
    before = index.search(emb, k=20)
    assert all(row[0] == keys[i] for i, row in enumerate(before.keys))  # self is the top match

    revoked = keys[3]
    with db_session_factory.begin() as s:
        revoke_reference_slice(s, int(revoked), actor=ACTOR, reason="wrong contour")

    assert len(index) == 19
    after = index.search(emb, k=20)  # k larger than the set: every approved slice comes back
    assert after.similarities.shape == (20, 19)
    assert all(revoked not in row for row in after.keys)
    assert set(after.keys[3]) == set(keys) - {revoked}
    with db_session_factory() as s:
        row = s.get(ReferenceSlice, int(revoked))
        assert row is not None and row.state == ReferenceState.REVOKED
        assert row.state_changed_by == ACTOR


def test_candidates_are_not_retrieved_until_approved(
    db_session_factory: sessionmaker[Session],
) -> None:
    rng = np.random.default_rng(8)
    with db_session_factory.begin() as s:
        lib = new_task(s)
        approved = add_slices(s, lib, rng.normal(size=(5, DIM)))
        candidates = add_slices(s, lib, rng.normal(size=(5, DIM)), approve=False)
    index = PgVectorIndex(db_session_factory, lib.task_id, "MR", "test-embedder")
    found = index.search(rng.normal(size=(3, DIM)), k=10)
    assert {k for row in found.keys for k in row} == set(approved)

    with db_session_factory.begin() as s:
        approve_reference_slice(s, int(candidates[0]), actor=ACTOR)
    assert len(index) == 6


def test_state_machine_rejects_invalid_transitions(
    db_session_factory: sessionmaker[Session],
) -> None:
    rng = np.random.default_rng(9)
    with db_session_factory.begin() as s:
        lib = new_task(s)
        (key,) = add_slices(s, lib, rng.normal(size=(1, DIM)))
    message = "approved; it cannot become approved"
    with pytest.raises(InvalidTransitionError, match=message), db_session_factory.begin() as s:
        approve_reference_slice(s, int(key), actor=ACTOR)
    with db_session_factory.begin() as s:
        revoke_reference_slice(s, int(key), actor=ACTOR)
    with pytest.raises(InvalidTransitionError), db_session_factory.begin() as s:
        revoke_reference_slice(s, int(key), actor=ACTOR)
    with db_session_factory.begin() as s:  # re-approval is allowed
        assert approve_reference_slice(s, int(key), actor=ACTOR).state == ReferenceState.APPROVED


def test_approval_needs_an_embedding(db_session_factory: sessionmaker[Session]) -> None:
    with db_session_factory.begin() as s:
        lib = new_task(s)
        from rafss_core.store.repositories import add_reference_slice

        ref = add_reference_slice(
            s,
            reference_set_id=lib.reference_set_id,
            study_instance_uid="2.25.1",
            series_instance_uid="2.25.2",
            sop_instance_uid="2.25.3",
            slice_index=0,
            image=np.zeros((4, 4), np.float32),
            mask=np.zeros((4, 4), np.uint8),
            modality="MR",
            actor=ACTOR,
        )
        ref_id = ref.id
    with pytest.raises(ValueError, match="no embedding"), db_session_factory.begin() as s:
        approve_reference_slice(s, ref_id, actor=ACTOR)
    with db_session_factory.begin() as s:
        approve_reference_slice(
            s, ref_id, actor=ACTOR, embedding=np.ones(DIM), embedder_id="test-embedder"
        )
    index = PgVectorIndex(db_session_factory, lib.task_id, "MR", "test-embedder")
    assert index.search(np.ones(DIM), k=1).keys == [[str(ref_id)]]


def test_reference_images_and_masks_roundtrip(db_session_factory: sessionmaker[Session]) -> None:
    rng = np.random.default_rng(10)
    with db_session_factory.begin() as s:
        lib = new_task(s)
        keys = add_slices(s, lib, rng.normal(size=(3, DIM)))
    with db_session_factory() as s:
        slices = load_reference_slices(s, keys)
    assert set(slices) == set(keys)
    for key in keys:
        assert slices[key].image.dtype == np.float32 and slices[key].image.shape == (8, 8)
        assert int(slices[key].labels.sum()) == 9
    with db_session_factory() as s, pytest.raises(LookupError, match="not found"):
        load_reference_slices(s, [*keys, "999999999"])


def test_reference_set_versions_increase(db_session_factory: sessionmaker[Session]) -> None:
    with db_session_factory.begin() as s:
        lib = new_task(s)
        second = create_reference_set(s, task_id=lib.task_id, actor=ACTOR)
        first = s.get(ReferenceSet, lib.reference_set_id)
        assert first is not None and (first.version, second.version) == (1, 2)
