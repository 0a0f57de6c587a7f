"""The Celery app: queues for I/O work and model work, at-least-once settings.

Every task is idempotent (jobs are claimed from their database row), so redelivery is safe:
``acks_late`` + ``task_reject_on_worker_lost`` requeue a message whose worker died, and the
outbox dispatcher re-enqueues any job whose message was lost anyway.

The broker is set at run time (:func:`configure`): ``RAFSS_BROKER_URL`` (Redis or RabbitMQ in
production) or, by default, kombu's SQLAlchemy transport on RAFSS's own Postgres, so the
embedded ``rafss up`` needs no external service.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from rafss_core.config import Settings

IO_QUEUE = "io"
MODEL_QUEUE = "model"

app = Celery("rafss", include=["workers.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_queues=(Queue(IO_QUEUE, Exchange(IO_QUEUE), routing_key=IO_QUEUE),
                 Queue(MODEL_QUEUE, Exchange(MODEL_QUEUE), routing_key=MODEL_QUEUE)),
    task_default_queue=IO_QUEUE,
    task_routes={"rafss.run_job": {"queue": MODEL_QUEUE, "routing_key": MODEL_QUEUE}},
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


def broker_url(settings: Settings, database_url: str | None = None) -> str:
    """The configured broker, or the embedded default on the database."""
    if settings.broker_url:
        return settings.broker_url
    if database_url is None:
        from rafss_core.store.engine import database_url as resolve

        database_url = resolve(settings)
    return "sqla+" + database_url


def configure(settings: Settings, database_url: str | None = None) -> Celery:
    app.conf.broker_url = broker_url(settings, database_url)
    if app.conf.broker_url.startswith("redis"):
        # unacked messages of a dead worker come back after this; the dispatcher's stale-job
        # recovery usually re-enqueues sooner
        app.conf.broker_transport_options = {"visibility_timeout": 3600}
    limit = settings.job_time_limit_seconds
    app.conf.task_time_limit = limit
    app.conf.task_soft_time_limit = max(1, limit - 60)
    return app
