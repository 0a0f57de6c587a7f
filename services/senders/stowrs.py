"""STOW-RS (DICOMweb) delivery with ``dicomweb-client``.

All files of a delivery go in one multipart POST to ``<url>/studies``. Classification:

- HTTP 200: every file stored; 202 with a ``FailedSOPSequence``: the listed files failed with
  their ``FailureReason`` (``0xA7xx`` out of resources: retried; ``0xA9xx``/``0x0122``/``0xC``
  and other refusals: permanent), the others are delivered;
- HTTP 400, 403, 404, 409, 415: permanent (the request cannot succeed as sent; the error says
  what to fix); 401: permanent until credentials change;
- HTTP 408, 429, 5xx, connection errors and timeouts: retried with the delivery backoff (the
  client itself retries a transient 5xx twice within one attempt).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydicom import dcmread
from retrying import RetryError

from rafss_core.store.repositories.deliveries import DestinationInfo
from services.senders import SendOutcome

log = logging.getLogger(__name__)

PERMANENT_HTTP = {400, 401, 403, 404, 405, 409, 413, 415}


def _failure_permanent(reason: int) -> bool:
    return not 0xA700 <= reason <= 0xA7FF and reason != 0x0110


def _http_status(exc: Exception) -> int | None:
    """The HTTP status behind an error (the client's retry wrapper keeps the last response)."""
    if isinstance(exc, RetryError):
        value = getattr(exc.last_attempt, "value", None)
        response = value[1] if isinstance(value, tuple) else value
        return getattr(response, "status_code", None)
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


class StowRsSender:
    protocol = "stow-rs"

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout

    def send(self, destination: DestinationInfo, paths: Sequence[str]) -> list[SendOutcome]:
        import requests
        from dicomweb_client.api import DICOMwebClient

        outcomes: dict[str, SendOutcome] = {}
        datasets = {}
        for path in paths:
            try:
                datasets[path] = dcmread(path)
            except FileNotFoundError:
                outcomes[path] = SendOutcome(path, None, False, "result file missing; re-run "
                                             "the job", permanent=True)
            except Exception as exc:
                outcomes[path] = SendOutcome(path, None, False, "result file unreadable "
                                             f"({type(exc).__name__})", permanent=True)
        if datasets:
            url = destination.url or ""
            session = requests.Session()
            if destination.tls_ca_file:  # a private CA for the PACS's certificate
                session.verify = destination.tls_ca_file
            client = DICOMwebClient(url=url, session=session, timeout=self.timeout)
            client.set_http_retry_params(retry=True, max_attempts=2,
                                         wait_exponential_multiplier=200,
                                         retriable_error_codes=(429, 500, 502, 503, 504))
            try:
                response = client.store_instances(list(datasets.values()))
            except (requests.HTTPError, RetryError) as exc:
                code = _http_status(exc)
                permanent = code in PERMANENT_HTTP
                error = (f"STOW-RS to {url} refused with HTTP {code}"
                         + ("; check the URL, the credentials and what the server accepts"
                            if permanent else "; will retry"))
                outcomes.update({p: SendOutcome(p, code, False, error, permanent)
                                 for p in datasets})
            except (requests.ConnectionError, requests.Timeout) as exc:
                error = f"cannot reach {url} ({type(exc).__name__}); will retry"
                outcomes.update({p: SendOutcome(p, None, False, error) for p in datasets})
            except Exception as exc:  # a malformed response, retry errors of the client
                error = f"STOW-RS to {url} failed ({type(exc).__name__}: {str(exc)[:200]})"
                outcomes.update({p: SendOutcome(p, None, False, error) for p in datasets})
            else:
                outcomes.update(self._per_file(datasets, response))
        return [outcomes[p] for p in paths]

    @staticmethod
    def _per_file(datasets: dict, response: object) -> dict[str, SendOutcome]:
        failed = {str(item.ReferencedSOPInstanceUID): int(item.get("FailureReason", 0x0110))
                  for item in getattr(response, "FailedSOPSequence", [])}
        out = {}
        for path, ds in datasets.items():
            reason = failed.get(str(ds.SOPInstanceUID))
            if reason is None:
                out[path] = SendOutcome(path, 200, True)
            else:
                out[path] = SendOutcome(
                    path, reason, False, f"STOW-RS refused it with FailureReason 0x{reason:04X}",
                    _failure_permanent(reason))
        return out
