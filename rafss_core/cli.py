"""The ``rafss`` command. Every verb has a Python API twin; heavy imports happen inside verbs."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="RAFSS: retrieval-augmented few-shot segmentation as a DICOM service.")
models_app = typer.Typer(no_args_is_help=True, help="Import and list model checkpoints.")
db_app = typer.Typer(no_args_is_help=True, help="Database migrations and status.")
app.add_typer(models_app, name="models")
app.add_typer(db_app, name="db")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="default: $RAFSS_DATA_DIR "
                                              "or ~/.local/share/rafss")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_path=False, rich_tracebacks=False)])


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _settings(data_dir: Path | None) -> Any:
    from rafss_core.config import Settings

    return Settings(data_dir=data_dir) if data_dir else Settings()


# -------------------------------------------------------------------------------- eval


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def print_eval_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if report["weights"] == "random":
        console.print(f"[bold red]{report['notice']}[/]")
    title = (f"RAFSS k={report['k']} models={report['models']} weights={report['weights']} "
             f"propagate={report['propagate']}")
    table = Table(title=title)
    table.add_column("label")
    table.add_column("Dice (mean ± sd)")
    table.add_column("HD95 mm")
    baseline = report.get("baseline")
    if baseline:
        table.add_column(f"{baseline['name']} Dice")
        table.add_column(f"{baseline['name']} HD95")
    for name, s in report["per_label"].items():
        row = [name, f"{s['dice']:.3f} ± {s['dice_std']:.3f}", _fmt(s["hd95"])]
        if baseline:
            b = baseline["per_label"][name]
            row += [f"{b['dice']:.3f}", _fmt(b["hd95"])]
        table.add_row(*row)
    row = ["mean", f"{report['mean_dice']:.3f}", ""]
    if baseline:
        row += [f"{baseline['mean_dice']:.3f}", ""]
    table.add_row(*row, style="bold")
    console.print(table)
    console.print(f"cases: {', '.join(c['case'] for c in report['cases'])}; "
                  f"reference slices: {report['reference_slices']}")


@app.command("eval")
def eval_cmd(
    data: Annotated[Path, typer.Option(help="nnU-Net-style dataset folder")],
    refs: Annotated[int, typer.Option(help="reference patients (first N of train)")] = 2,
    queries: Annotated[int, typer.Option(help="query patients (first M of test)")] = 1,
    k: Annotated[int, typer.Option(help="references retrieved per target slice")] = 4,
    models: Annotated[str, typer.Option(help="'tiny-random' or 'SAM,DINO' ids")] = "tiny-random",
    baseline: Annotated[str | None, typer.Option(help="label-transfer")] = None,
    propagate: Annotated[bool, typer.Option(help="previous slice as extra memory")] = False,
    pooling: Annotated[str, typer.Option(help="cls or cls+mean")] = "cls",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
) -> None:
    """Few-shot evaluation: Dice and HD95 per label, per case in 3D."""
    from rafss_core.evaluate import EvalConfig, run_eval, write_report
    from rafss_core.segmentation.models import ModelNotFoundError, ModelSpecError

    if baseline not in (None, "label-transfer"):
        _fail(f"unknown baseline {baseline!r}; the only baseline is label-transfer")
    if pooling not in ("cls", "cls+mean"):
        _fail("--pooling must be cls or cls+mean")
    cfg = EvalConfig(data=data, refs=refs, queries=queries, k=k, models=models,
                     baseline=baseline, propagate=propagate, pooling=pooling)  # type: ignore[arg-type]
    try:
        report = run_eval(cfg)
    except (ModelNotFoundError, ModelSpecError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    print_eval_table(report)
    if json_out:
        write_report(report, json_out)
        typer.echo(f"wrote {json_out}")


# -------------------------------------------------------------------------------- segment


@app.command("segment")
def segment_cmd(
    images: Annotated[list[Path], typer.Option("--images", help="NIfTI files to segment")],
    reference_images: Annotated[Path, typer.Option(help="folder of reference images")],
    reference_labels: Annotated[Path, typer.Option(help="folder of reference label maps")],
    out: Annotated[Path, typer.Option(help="output folder for <case>.nii.gz label maps")],
    models: Annotated[str, typer.Option(help="'tiny-random' or 'SAM,DINO' ids")] = "tiny-random",
    k: Annotated[int, typer.Option(help="references retrieved per target slice")] = 4,
    modality: Annotated[str, typer.Option(help="intensity profile: MR, CT or OT")] = "MR",
    more_images: Annotated[list[Path] | None, typer.Argument(help="more files after --images",
                                                             show_default=False)] = None,
) -> None:
    """Segment NIfTI volumes from annotated references; writes label maps on source geometry."""
    from rafss_core.predict import segment_files
    from rafss_core.segmentation.models import ModelNotFoundError, ModelSpecError

    files = [*images, *(more_images or [])]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        _fail(f"input files not found: {', '.join(missing)}")
    try:
        written = segment_files(files, reference_images, reference_labels, out, models, k,
                                modality.upper())
    except (ModelNotFoundError, ModelSpecError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    for path in written:
        typer.echo(str(path))


# -------------------------------------------------------------------------------- models


@models_app.command("import")
def models_import(
    model_id: Annotated[str, typer.Argument(help="e.g. sam2.1-b+, medsam2, dinov2-b")],
    path: Annotated[Path, typer.Argument(help=".pt/.pth/.safetensors file or HF folder")],
    data_dir: DataDir = None,
    link: Annotated[bool, typer.Option(help="record the path instead of copying")] = False,
) -> None:
    """Import a checkpoint from disk (records its SHA-256)."""
    from rafss_core.segmentation.models import ModelRegistry, ModelSpecError

    registry = ModelRegistry.open(_settings(data_dir).models_dir)
    try:
        entry = registry.import_checkpoint(model_id, path, copy=not link)
    except (ModelSpecError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"imported {model_id}: {entry['path']} sha256={entry['sha256']}")


@models_app.command("list")
def models_list(data_dir: DataDir = None) -> None:
    """List imported checkpoints."""
    from rafss_core.segmentation.models import ModelRegistry

    registry = ModelRegistry.open(_settings(data_dir).models_dir)
    typer.echo("tiny-random\t(preset: random weights, tests only)")
    for model_id, entry in sorted(registry.entries.items()):
        typer.echo(f"{model_id}\t{entry['path']}\tsha256={entry['sha256'][:12]}")


# -------------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Run migrations (embedded Postgres unless RAFSS_DATABASE_URL is set)."""
    from rafss_core.store import admin

    head = admin.upgrade(data_dir=_settings(data_dir).data_dir)
    typer.echo(f"database at revision {head}")


@db_app.command("status")
def db_status(data_dir: DataDir = None) -> None:
    """Server version, pgvector version and migration head."""
    from rafss_core.store import admin

    typer.echo(json.dumps(admin.status(data_dir=_settings(data_dir).data_dir), indent=2))
