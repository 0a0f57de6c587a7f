"""The application layer's errors beyond :class:`LookupError` and :class:`ValueError`."""

from __future__ import annotations

from rafss_core.store.repositories.references import InvalidTransitionError


class ConflictError(ValueError):
    """The request conflicts with what exists, e.g. a task with that name (HTTP 409)."""


__all__ = ["ConflictError", "InvalidTransitionError"]
