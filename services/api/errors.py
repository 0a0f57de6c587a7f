"""The API's error contract: one error body, the statuses a route declares, and the one check
that keeps text Postgres cannot store (NUL bytes, unpaired surrogates) out of every route.

Routes declare what they can answer with ``responses=errors(401, 403, 404, ...)``; the
bodies are :class:`ErrorOut` (``{"detail": "..."}``) or, for 422, :class:`ValidationErrorOut`
(FastAPI's list of field errors, or one message from a use case).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    """What went wrong and what to do next."""

    detail: str


class FieldError(BaseModel):
    """One invalid input: where (``["query", "actor"]``), what, and its error type."""

    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """422: field errors from request validation, or one message from a use case."""

    detail: str | list[FieldError]


_MEANING = {
    400: "The body could not be parsed (malformed JSON or multipart data).",
    401: "No bearer token, or an unknown or revoked one.",
    403: "The token's role is too low (or a UI write lacks its CSRF token).",
    404: "The named object does not exist.",
    409: "The object's state forbids this, or one with that name exists.",
    413: "The body is larger than RAFSS_MAX_UPLOAD_MB.",
    422: "A value is invalid: its field and the reason are named.",
    503: "The database is unavailable.",
    507: "Free disk space is below RAFSS_MIN_FREE_DISK_MB; free space and retry.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry for these error statuses, each with its model and meaning."""
    return {code: {"model": ValidationErrorOut if code == 422 else ErrorOut,
                   "description": _MEANING[code]} for code in codes}


# row ids and offsets are Postgres bigints: a larger number is invalid input (422), not a 500
MAX_BIGINT = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="a row id")]
RowIdFilter = Annotated[int | None, Query(ge=1, le=MAX_BIGINT, description="a row id")]
Offset = Annotated[int, Query(ge=0, le=MAX_BIGINT)]

# what each kind of route can answer with besides its success

WRITE = (400, 401, 403, 413, 422)  # a route with a JSON or form body, a role above viewer


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return "NUL bytes (0x00) are not allowed in text"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "unpaired surrogates are not valid text"
    return None


def _name(key: Any) -> str | int:
    """A location part that is safe to echo and log: the name, unless it is itself bad."""
    if isinstance(key, int):
        return key
    return str(key) if _unstorable(str(key)) is None else "<unstorable name>"


def _walk(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        if (reason := _unstorable(value)) is not None:
            yield loc, reason
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(key, (*loc, "<key>"))
            yield from _walk(item, (*loc, _name(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, (*loc, i))


async def reject_unstorable_text(request: Request) -> None:
    """Every route's first dependency: refuse text that Postgres cannot store, with 422.

    Checks path and query parameters, JSON bodies, form fields and uploaded file names. The
    body was already read by FastAPI (this reads its cached copy), and nothing has run yet, so
    a refused request writes nothing. The values themselves are never logged (PHI).

    Raises:
        RequestValidationError: 422, with each offending field's location.
    """
    found = [*_walk(dict(request.path_params), ("path",))]
    for key, value in request.query_params.multi_items():
        found += [(("query", _name(key)), reason) for _, reason in _walk([key, value], ())]
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        for key, value in form.multi_items():
            text = value if isinstance(value, str) else (value.filename or "")
            found += [(("body", _name(key)), reason) for _, reason in _walk([key, text], ())]
    elif "json" in content_type:
        with contextlib.suppress(ValueError):  # FastAPI answers a body it cannot parse itself
            found += _walk(json.loads(await request.body() or b"null"), ("body",))
    if found:
        log.info("%s %s -> 422 (unstorable text in %s)", request.method, request.url.path,
                 ", ".join(".".join(map(str, loc)) for loc, _ in found))
        raise RequestValidationError([{"type": "string_unstorable", "loc": loc, "msg": reason,
                                       "input": None} for loc, reason in found])
