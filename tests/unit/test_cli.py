"""The CLI verbs end to end on real ACDC volumes (tiny-random weights, CPU)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from rafss_core.cli import app

runner = CliRunner()


def test_eval_smoke_acdc(acdc_root, tmp_path):
    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--data", str(acdc_root), "--refs", "2", "--queries", "1",
                              "--k", "2", "--models", "tiny-random",
                              "--baseline", "label-transfer", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "RANDOM WEIGHTS" in res.output
    report = json.loads(out.read_text())
    for key in ("models", "weights", "k", "per_label", "mean_dice", "cases"):
        assert key in report
    assert report["weights"] == "random" and report["k"] == 2
    assert set(report["per_label"]) == {"RV", "MYO", "LV"}
    assert [c["case"] for c in report["cases"]] == ["patient001_frame01", "patient001_frame02"]
    assert len(report["reference_patients"]) == 2 and report["reference_slices"] > 10
    for s in [*report["per_label"].values(), *report["baseline"]["per_label"].values()]:
        assert 0.0 <= s["dice"] <= 1.0
    mean = np.mean([s["dice"] for s in report["per_label"].values()])
    assert report["mean_dice"] == mean
    # retrieval alone already transfers real anatomy between ACDC patients
    assert report["baseline"]["mean_dice"] > 0.1


def test_segment_writes_label_maps_on_source_geometry(acdc_root, tmp_path):
    ref_img, ref_lab = tmp_path / "ri", tmp_path / "rl"
    ref_img.mkdir()
    ref_lab.mkdir()
    for case in ("patient003_frame01", "patient003_frame02"):
        (ref_img / f"{case}_0000.nii.gz").symlink_to(
            acdc_root / "imagesTr" / f"{case}_0000.nii.gz")
        (ref_lab / f"{case}.nii.gz").symlink_to(acdc_root / "labelsTr" / f"{case}.nii.gz")
    target = acdc_root / "imagesTr" / "patient001_frame01_0000.nii.gz"
    res = runner.invoke(app, ["segment", "--images", str(target), "--reference-images",
                              str(ref_img), "--reference-labels", str(ref_lab),
                              "--out", str(tmp_path / "out"), "--models", "tiny-random",
                              "--k", "2"])
    assert res.exit_code == 0, res.output
    written = nib.load(str(tmp_path / "out" / "patient001_frame01.nii.gz"))
    source = nib.load(str(target))
    assert written.shape == source.shape
    assert np.allclose(written.affine, source.affine)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 3}


def test_missing_model_error_names_import(acdc_root, tmp_path):
    res = runner.invoke(app, ["eval", "--data", str(acdc_root), "--models",
                              "sam2.1-b+,dinov2-b"], env={"RAFSS_DATA_DIR": str(tmp_path)})
    assert res.exit_code == 2
    assert "rafss models import sam2.1-b+" in res.output


def test_models_import_and_list(tmp_path):
    import torch

    ckpt = tmp_path / "x.pt"
    torch.save({"model": {}}, ckpt)
    res = runner.invoke(app, ["models", "import", "sam2.1-t", str(ckpt), "--data-dir",
                              str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    listing = runner.invoke(app, ["models", "list", "--json", "--data-dir",
                                  str(tmp_path / "d")])
    assert listing.exit_code == 0, listing.output
    rows = {r["model_id"]: r for r in json.loads(listing.stdout[listing.stdout.index("["):])}
    assert rows["sam2.1-t"]["backend"] == "sam2-memory" and len(rows["sam2.1-t"]["sha256"]) == 64
    # LiteMedSAM is available without an import, with its pinned checkpoint hash
    assert rows["litemedsam"]["sha256"].startswith("79d8c9dca6db")
    assert rows["litemedsam"]["size_bytes"] == 39370479
    bad = runner.invoke(app, ["models", "import", "sam2.1-t", str(tmp_path / "nope.pt")])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_db_upgrade_and_status_on_a_fresh_data_dir(tmp_path):
    env = {"RAFSS_DATABASE_URL": ""}
    up = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)], env=env)
    assert up.exit_code == 0, up.output
    assert "database at revision" in up.output
    res = runner.invoke(app, ["db", "status", "--data-dir", str(tmp_path)], env=env)
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout[res.stdout.index("{"):])
    assert status["server_version"].startswith("18")
    assert status["pgvector_version"].startswith("0.8")
    assert status["current_revision"] == status["migration_head"]
    assert (tmp_path / "pg").is_dir()


def test_device_is_checked_before_models_load(acdc_root, tmp_path, monkeypatch):
    """--device / RAFSS_DEVICE reach eval, segment and worker, and a GPU that is not there
    fails at once with the fix (exit 2), never inside a job."""
    import torch

    if torch.cuda.is_available():
        import pytest

        pytest.skip("this machine has a GPU")
    target = acdc_root / "imagesTr" / "patient001_frame01_0000.nii.gz"
    cases = [
        (["segment", "--images", str(target), "--reference-images", str(tmp_path),
          "--reference-labels", str(tmp_path), "--out", str(tmp_path / "o"),
          "--models", "tiny-random", "--device", "cuda"], {}),
        (["eval", "--data", str(acdc_root), "--models", "tiny-random"], {"RAFSS_DEVICE": "cuda:0"}),
        (["worker", "--data-dir", str(tmp_path), "--device", "cuda"], {}),
        (["up", "--data-dir", str(tmp_path), "--models", "tiny-random"], {"RAFSS_DEVICE": "cuda"}),
    ]
    for args, env in cases:
        res = runner.invoke(app, args, env=env)
        assert res.exit_code == 2, (args, res.output)
        assert "no CUDA GPU is visible" in res.output and "RAFSS_DEVICE=cpu" in res.output
    bad = runner.invoke(app, ["eval", "--data", str(acdc_root), "--precision", "fp16"])
    assert bad.exit_code == 2 and "auto, fp32, bf16" in bad.output


def test_precision_reaches_the_decoder_and_the_worker_settings(tmp_path):
    from rafss_core.config import Settings
    from rafss_core.segmentation.backends import build_segmenter
    from rafss_core.segmentation.segmenter import BuildContext
    from workers import tasks

    seg = build_segmenter("sam2-memory", "tiny-random", BuildContext(tmp_path, "cpu", "bf16"))
    assert seg.decoder.precision == "bf16" and seg.decoder.bank.device == "cpu"
    auto = build_segmenter("sam2-memory", "tiny-random", BuildContext(tmp_path, "cpu"))
    assert auto.decoder.precision == "fp32" and auto.decoder.batch_size == 8  # auto on a CPU
    sized = build_segmenter("sam2-memory", "tiny-random",
                            BuildContext(tmp_path, "cpu", batch_size=3))
    assert sized.decoder.batch_size == 3

    given = Settings.load(data_dir=tmp_path, precision="bf16",
                          database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    earlier = tasks._context  # another test may have built this process's context
    tasks._context = None
    tasks.use_settings(given)
    try:
        assert tasks.worker_context().settings is given  # `rafss worker` options reach jobs
    finally:
        tasks.use_settings(None)
        tasks._context = earlier


def test_eval_atlas_baseline_beats_label_transfer_on_two_patients(acdc_root, tmp_path):
    """`--baseline atlas` (registration, majority vote) on one reference and one query
    patient: it scores above label transfer with the same retrieval; `--oracle-slices` adds
    the few-shot protocol's Dice."""
    reports = {}
    for baseline in ("atlas", "label-transfer"):
        out = tmp_path / f"{baseline}.json"
        res = runner.invoke(app, ["eval", "--data", str(acdc_root), "--refs", "1",
                                  "--queries", "1", "--k", "2", "--models", "tiny-random",
                                  "--baseline", baseline, "--oracle-slices", "--json",
                                  str(out)])
        assert res.exit_code == 0, res.output
        reports[baseline] = json.loads(out.read_text())["baseline"]
    atlas, transfer = reports["atlas"], reports["label-transfer"]
    assert atlas["name"] == "atlas" and atlas["atlases"] == 3
    assert len(atlas["cases"]) == 2
    print(f"atlas {atlas['mean_dice']:.3f} vs label transfer {transfer['mean_dice']:.3f}")
    assert atlas["mean_dice"] > transfer["mean_dice"]
    for s in atlas["per_label"].values():
        assert 0.0 <= s["dice"] <= 1.0 and 0.0 <= s["dice_oracle"] <= 1.0
    assert "mean_dice_oracle" in atlas


def test_unknown_baseline_names_the_choices(acdc_root):
    res = runner.invoke(app, ["eval", "--data", str(acdc_root), "--baseline", "nope"])
    assert res.exit_code == 2 and "label-transfer, atlas" in res.output
