"""The application layer: one function per use case, called by the CLI, the API and the workers.

Every use case takes an :class:`App` (database sessions and settings) and, when it changes
something, the ``actor`` who asked (``cli``, ``token:<name>``, ``worker``); it runs in its own
transaction and writes exactly one audit row for what it did. The CLI verbs and the API routes
only parse, call one of these, and render the result.

Errors: :class:`LookupError` (something named does not exist: HTTP 404),
:class:`ValueError` (bad input: HTTP 422), and from :mod:`rafss_core.app.errors`
``InvalidTransitionError`` (the object's state forbids it: HTTP 409) and ``ConflictError`` (one
with that name exists: HTTP 409).
"""

from rafss_core.app.context import App

__all__ = ["App"]
