"""Curation on a real database: tasks, NIfTI and DICOM+SEG imports (de-identified), review,
retrieval, and the preparation job that approval queues."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from rafss_core.app import App
from rafss_core.app.references import import_volumes
from rafss_core.app.tasks import new_task, parse_label
from rafss_core.config import Settings
from rafss_core.datasets.annotated import dicom_volume, nifti_volumes
from rafss_core.dicom.labels import task_segments
from rafss_core.segmentation.models import load_models
from rafss_core.segmentation.volume import normalise
from rafss_core.store.models import ReferenceSlice
from rafss_core.store.repositories.tasks import task_by_name
from rafss_core.store.vector import PgVectorIndex
from tests.factories import ACDC, acdc_case, volume_to_mr_series


@pytest.fixture(scope="module")
def tiny():
    return load_models("tiny-random")


def test_parse_label_codes():
    lv = parse_label("3:LV", 0)
    assert (lv.number, lv.name, lv.type) == (3, "LV", ("SCT", "32547003",
                                                       "Left ventricle cavity"))
    custom = parse_label("4:Scar:SCT:12345", 1)
    assert custom.type == ("SCT", "12345", "Scar") and custom.colour_rgb != lv.colour_rgb
    assert parse_label("5:Thing", 2).type[1] == "91723000"  # generic anatomical structure
    for bad in ["LV", "x:LV", "1:", "1:a:b"]:
        with pytest.raises(ValueError, match="NUMBER:NAME"):
            parse_label(bad, 0)


def _task(sessions, tmp_path) -> str:
    name = f"cardiac-{uuid.uuid4().hex[:6]}"
    with sessions.begin() as s:
        new_task(s, name, "mr", ["1:RV", "2:MYO", "3:LV"], "tiny-random", tmp_path, k=2)
    return name


def _app(sessions, tmp_path) -> App:
    return App(sessions, Settings(data_dir=tmp_path / "data", models="tiny-random"))


def _slice_ids(sessions, candidate_id: int) -> list[int]:
    with sessions() as s:
        return list(s.execute(sa.select(ReferenceSlice.id).where(
            ReferenceSlice.candidate_id == candidate_id).order_by(ReferenceSlice.id)).scalars())


def test_nifti_import_is_approved_and_retrievable(db_session_factory, migrated_engine, tiny,
                                                  tmp_path):
    name = _task(db_session_factory, tmp_path)
    app = _app(db_session_factory, tmp_path)
    volumes = nifti_volumes(ACDC / "imagesTr", ACDC / "labelsTr", ["patient003"], "MR")
    assert [v.volume.num_slices for v in volumes] and len(volumes) == 2  # ED and ES frames
    c = import_volumes(app, "cli", name, volumes, approve=True, segmenter=_segmenter(tiny))
    n = sum(v.volume.num_slices for v in volumes)
    assert (c.slices, c.state, c.reference_set_version) == (n, "approved", 1)
    with db_session_factory() as s:
        task = task_by_name(s, name)
        assert task.modality == "MR" and task.segmenter_id == "tiny-random"
        task_id, embedder_id = task.id, task.embedder_id
    index = PgVectorIndex(migrated_engine, task_id, "MR", embedder_id)
    assert len(index) == n
    # a stored slice retrieves itself first, with cosine similarity 1
    query = tiny.embedder().embed(normalise(volumes[0].volume)[:1])
    hit = index.search(query, 3)
    assert hit.keys[0][0] == str(_slice_ids(db_session_factory, c.id)[0])
    assert hit.similarities[0, 0] == pytest.approx(1.0, abs=1e-4)
    again = import_volumes(app, "cli", name, volumes[:1], segmenter=_segmenter(tiny))
    assert again.state == "pending" and again.reference_set_version is None
    assert len(index) == n  # candidates are not retrievable
    from rafss_core.app.references import approve_candidate, reject_candidate
    from rafss_core.store.repositories.references import InvalidTransitionError

    approved = approve_candidate(app, "reviewer", again.id)
    assert approved.reference_set_version == 2  # approval bumps the version
    assert len(index) == n + volumes[0].volume.num_slices
    with pytest.raises(InvalidTransitionError, match="already approved"):
        reject_candidate(app, "reviewer", again.id)


def test_dicom_import_is_deidentified_and_keeps_labels(db_session_factory, tiny, tmp_path):
    from rafss_core.app.references import deidentifier
    from rafss_core.dicom.seg import AlgorithmInfo, write_seg
    from rafss_core.dicom.series import load_series

    name = _task(db_session_factory, tmp_path)
    app = _app(db_session_factory, tmp_path)
    volume, labels = acdc_case("patient004_frame01")
    files = volume_to_mr_series(volume, tmp_path / "series", seed="curation")
    loaded = load_series(files)
    with db_session_factory() as s:
        segments = task_segments(list(task_by_name(s, name).labels))
    seg = write_seg(labels, loaded, segments, AlgorithmInfo(["expert"], "0"), "expert-1")
    seg.save_as(tmp_path / "seg.dcm")
    av = dicom_volume(tmp_path / "series", tmp_path / "seg.dcm", segments)
    assert np.array_equal(av.labels, labels)
    assert av.seg_uid == seg.SOPInstanceUID and av.series_uid == loaded.series_instance_uid
    c = import_volumes(app, "cli", name, [av], approve=True, segmenter=_segmenter(tiny))
    with db_session_factory() as s:
        rows = s.execute(sa.select(ReferenceSlice).where(ReferenceSlice.candidate_id == c.id)
                         .order_by(ReferenceSlice.slice_index)).scalars().all()
        stored = [(r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid,
                   r.seg_sop_instance_uid) for r in rows]
        masks = [r.mask_npz for r in rows]
    # no original identifier enters the bank: UIDs are replaced consistently (seeded per
    # installation), and the label masks are kept exactly
    originals = {loaded.study_instance_uid, loaded.series_instance_uid, seg.SOPInstanceUID,
                 *loaded.sop_instance_uids}
    assert not originals & {u for row in stored for u in row}
    expected = deidentifier(app).uids(loaded.study_instance_uid, loaded.series_instance_uid,
                                      loaded.sop_instance_uids)
    assert [r[2] for r in stored] == expected.sop_instance_uids
    assert {r[1] for r in stored} == {expected.series_instance_uid}
    assert len({r[3] for r in stored}) == 1
    from rafss_core.store.arrays import decode_array

    assert np.array_equal(np.stack([decode_array(m) for m in masks]), labels)


def test_import_refuses_models_that_do_not_match_the_task(db_session_factory, tmp_path):
    with db_session_factory.begin() as s:
        from rafss_core.store.repositories import LabelSpec, create_task

        name = f"other-{uuid.uuid4().hex[:6]}"
        create_task(s, name=name, modality="MR", labels=[LabelSpec(1, "LV")],
                    embedder_id="dinov2-b:abc|224|cls", segmenter_id="tiny-random", actor="t")
    with pytest.raises(ValueError, match="expects embedder"):
        import_volumes(_app(db_session_factory, tmp_path), "cli", name, [], approve=True)


def _segmenter(tiny, memories=None):
    from rafss_core.segmentation.backends.sam2_memory import Sam2MemorySegmenter
    from rafss_core.segmentation.memory import MemoryBank, MemoryDecoder

    return Sam2MemorySegmenter(tiny, MemoryDecoder(tiny.sam, tiny.sam_id,
                                                   MemoryBank(directory=memories)))


def test_approval_queues_preparation_of_memories_the_worker_finds(db_session_factory, tiny,
                                                                  tmp_path):
    from rafss_core.app.imports import run_prepare_job
    from rafss_core.segmentation.memory import MemoryBank, MemoryDecoder
    from rafss_core.store.repositories import load_reference_slices
    from rafss_core.store.repositories.jobs import get_job, list_jobs

    name = _task(db_session_factory, tmp_path)
    app = _app(db_session_factory, tmp_path)
    volumes = nifti_volumes(ACDC / "imagesTr", ACDC / "labelsTr", ["patient005_frame01"], "MR")
    memories = tmp_path / "memories"
    c = import_volumes(app, "cli", name, volumes, approve=True,
                       segmenter=_segmenter(tiny, memories))
    assert not memories.exists() or not list(memories.rglob("*.safetensors"))  # not inline
    with db_session_factory() as s:
        (row,) = list_jobs(s, kind="prepare_references", task=name)
        job = get_job(s, row.id)
    assert job is not None and job.payload == {"candidate_id": c.id}
    n = volumes[0].volume.num_slices
    assert run_prepare_job(app, job.payload, _segmenter(tiny, memories), [1, 2, 3]) == n * 3
    assert len(list(memories.rglob("*.safetensors"))) == n * 3  # every slice x label
    # what a worker does at job time: slices from the store, masks per task label
    with db_session_factory() as s:
        slices = list(load_reference_slices(s, _slice_ids(db_session_factory, c.id)).values())
    bank = MemoryBank(directory=memories)
    decoder = MemoryDecoder(tiny.sam, tiny.sam_id, bank)
    images = np.stack([r.image for r in slices])
    decoder.label_memories(images, np.stack([[r.labels == v for r in slices] for v in (1, 2, 3)]))
    assert bank.disk_hits == n * 3 and bank.misses == 0  # nothing recomputed


def test_revocation_removes_what_only_that_slice_used(db_session_factory, tiny, tmp_path):
    from rafss_core.app.imports import run_forget_job, run_prepare_job
    from rafss_core.app.references import revoke_slice
    from rafss_core.store.repositories.jobs import get_job, list_jobs

    name = _task(db_session_factory, tmp_path)
    app = _app(db_session_factory, tmp_path)
    volumes = nifti_volumes(ACDC / "imagesTr", ACDC / "labelsTr", ["patient006_frame01"], "MR")
    memories = tmp_path / "memories"
    c = import_volumes(app, "cli", name, volumes, approve=True,
                       segmenter=_segmenter(tiny, memories))
    run_prepare_job(app, {"candidate_id": c.id}, _segmenter(tiny, memories), [1, 2, 3])
    before = len(list(memories.rglob("*.safetensors")))  # identical blank slices share theirs
    ids = _slice_ids(db_session_factory, c.id)
    victim = ids[len(ids) // 2]  # a slice through the heart: its memories are its own
    revoke_slice(app, "reviewer", victim, "wrong phase")
    with db_session_factory() as s:
        jobs = [get_job(s, j.id) for j in list_jobs(s, kind="prepare_references", task=name)]
    (forget,) = [j for j in jobs if "forget_slice_ids" in j.payload]
    assert forget.payload == {"forget_slice_ids": [victim]}
    assert run_forget_job(app, forget.payload, _segmenter(tiny, memories), [1, 2, 3]) == 3
    assert len(list(memories.rglob("*.safetensors"))) == before - 3  # only its memories
