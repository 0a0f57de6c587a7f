"""The application layer on a real database: every use case writes one audit row with its
actor, candidates move through review, and a revocation re-keys later jobs."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from rafss_core.app import App, jobs, peers, references, tasks, tokens
from rafss_core.app.audit_log import list_audit
from rafss_core.config import Settings
from rafss_core.datasets.annotated import AnnotatedVolume
from rafss_core.segmentation.volume import Volume
from rafss_core.store.repositories.references import InvalidTransitionError


@pytest.fixture(scope="module")
def tiny():
    """The real tiny-random segmenter (seeded random weights), built once."""
    from rafss_core.segmentation.backends import build_segmenter
    from rafss_core.segmentation.segmenter import BuildContext

    return build_segmenter("sam2-memory", "tiny-random", BuildContext(models_dir=None))


@pytest.fixture
def app(db_session_factory, tmp_path) -> App:
    return App(db_session_factory, Settings(data_dir=tmp_path, models="tiny-random",
                                            backend="sam2-memory"))


def _actions(app: App, actor: str) -> list[str]:
    return [e.action for e in reversed(list_audit(app, actor=actor, limit=1000))]


def _volume(z: int = 3) -> AnnotatedVolume:
    rng = np.random.default_rng(0)
    labels = np.zeros((z, 16, 16), np.int16)
    labels[:, 4:9, 4:9] = 1
    return AnnotatedVolume(Volume(rng.random((z, 16, 16)).astype(np.float32)), labels,
                           "1.2.3", "1.2.3.4", [f"1.2.3.4.{i}" for i in range(z)])


def _task(app: App, actor: str) -> str:
    name = f"t-{uuid.uuid4().hex[:6]}"
    tasks.create_task(app, actor, name=name, modality="MR", labels=["1:LV"], k=2)
    return name


def test_every_use_case_audits_once_with_its_actor(app, tiny):
    actor = f"token:alice-{uuid.uuid4().hex[:4]}"
    name = _task(app, actor)
    tasks.add_route(app, actor, task=name, modality="MR")
    peers.allow_source(app, actor, ae_title="CT1", ip="10.0.0.0/8")
    peers.add_destination(app, actor, name=f"d{uuid.uuid4().hex[:6]}", address="PACS@h:104")
    view, _ = tokens.create_token(app, actor, role="viewer")
    tokens.revoke_token(app, actor, view.id)
    c1 = references.import_volumes(app, actor, name, [_volume()], segmenter=tiny)
    references.approve_candidate(app, actor, c1.id)
    c2 = references.import_volumes(app, actor, name, [_volume()], segmenter=tiny)
    references.reject_candidate(app, actor, c2.id, "blurred")
    slice_id = references.list_slices(app, name, state="approved")[0].id
    references.revoke_slice(app, actor, slice_id, "wrong phase")
    assert _actions(app, actor) == [
        "task.create", "route.add", "source.allow", "destination.add", "token.create",
        "token.revoke", "references.import", "candidate.approve", "references.import",
        "candidate.reject", "reference_slice.revoke"]


def test_review_states_and_versions(app, tiny):
    name = _task(app, "cli")
    c = references.import_volumes(app, "cli", name, [_volume(4)], segmenter=tiny)
    assert (c.state, c.slices, c.reference_set_version) == ("pending", 4, None)
    assert tasks.get_task(app, name).pending_candidates == 1
    assert references.approve_candidate(app, "r", c.id).reference_set_version == 1
    with pytest.raises(InvalidTransitionError):
        references.approve_candidate(app, "r", c.id)
    view = tasks.get_task(app, name)
    assert (view.reference_set_version, view.approved_slices, view.pending_candidates) == \
        (1, 4, 0)
    first = references.list_slices(app, name, state="approved")[0]
    references.revoke_slice(app, "r", first.id)
    assert tasks.get_task(app, name).reference_set_version == 2  # job keys change
    with pytest.raises(InvalidTransitionError):
        references.revoke_slice(app, "r", first.id)
    with pytest.raises(LookupError):
        references.approve_candidate(app, "r", 10**9)
    pending = references.import_volumes(app, "cli", name, [_volume(2)], segmenter=tiny)
    candidate_slice = references.list_slices(app, name, candidate_id=pending.id)[0]
    with pytest.raises(InvalidTransitionError, match="reject its candidate"):
        references.revoke_slice(app, "r", candidate_slice.id)
    with pytest.raises(ValueError, match="unknown candidate state"):
        references.list_candidates(app, name, "maybe")
    png = references.slice_thumbnail(app, first.id)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_refuses_label_values_the_task_lacks(app, tiny):
    name = _task(app, "cli")
    bad = _volume()
    bad.labels[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"label values \[9\]"):
        references.import_volumes(app, "cli", name, [bad], segmenter=tiny)
    assert references.list_candidates(app, name) == []


def test_tokens_authenticate_until_revoked(app):
    view, token = tokens.create_token(app, "cli", role="reviewer", name=f"r{uuid.uuid4().hex[:6]}")
    assert token.startswith("rafss_") and len(token) > 40
    assert tokens.authenticate(app, token).role == "reviewer"
    assert tokens.authenticate(app, token + "x") is None
    import hashlib

    from rafss_core.store.models import ApiToken

    with app.sessions() as s:  # only the hash is stored, in no column the token itself
        row = s.get(ApiToken, view.id)
        stored = [str(getattr(row, c.key)) for c in ApiToken.__table__.columns]
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token in value for value in stored)
    tokens.revoke_token(app, "cli", view.id)
    assert tokens.authenticate(app, token) is None
    with pytest.raises(ValueError, match="unknown role"):
        tokens.create_token(app, "cli", role="root")


def test_rerun_is_audited_and_refused_while_queued(app):
    from rafss_core.store.repositories.jobs import create_job

    with app.sessions.begin() as s:
        job_id, _ = create_job(s, kind="segment", idempotency_key=uuid.uuid4().hex, payload={})
    from rafss_core.app.errors import InvalidTransitionError

    with pytest.raises(InvalidTransitionError, match="queued"):
        jobs.rerun_job(app, "cli", job_id)
    with app.sessions.begin() as s:
        from rafss_core.store.repositories.jobs import claim_job, finish_job

        attempt, _ = claim_job(s, job_id)
        finish_job(s, job_id, attempt, "dead", "boom")
    assert jobs.rerun_job(app, "cli", job_id).state == "queued"
    with app.sessions.begin() as s:  # a finished import is not re-run: import again
        imp, _ = create_job(s, kind="embed_references", idempotency_key=uuid.uuid4().hex,
                            payload={})
        attempt, _ = claim_job(s, imp)
        finish_job(s, imp, attempt, "succeeded", None)
    with pytest.raises(InvalidTransitionError, match="import again"):
        jobs.rerun_job(app, "cli", imp)
    assert [e.details for e in list_audit(app, action="job.rerun", object_id=str(job_id))] == \
        [{"from": "dead"}]


def test_a_given_token_is_registered_once(app):
    given = "rafss_" + uuid.uuid4().hex + uuid.uuid4().hex
    view, token = tokens.create_token(app, "k8s", role="admin", name="bootstrap", token=given)
    again, _ = tokens.create_token(app, "k8s", role="admin", name="bootstrap", token=given)
    assert token == given and again.id == view.id
    assert tokens.authenticate(app, given).role == "admin"
    with pytest.raises(ValueError, match="at least 32"):
        tokens.create_token(app, "k8s", role="admin", token="rafss_short")
    tokens.revoke_token(app, "ops", view.id)  # rotated: the old one may not come back
    with pytest.raises(ValueError, match="revoked"):
        tokens.create_token(app, "k8s", role="admin", name="bootstrap", token=given)
