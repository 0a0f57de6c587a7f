"""State and kind enumerations.

They are stored as ``text`` columns with ``CHECK`` constraints rather than native Postgres
enums: adding a value is then a constraint swap in a migration instead of ``ALTER TYPE``, which
cannot run inside a transaction on older servers and cannot drop values at all.
"""

from __future__ import annotations

from enum import StrEnum


class SeriesState(StrEnum):
    """Series assembly: open while instances arrive, closed after the quiet period."""

    OPEN = "open"
    CLOSED = "closed"
    ROUTED = "routed"


class InstanceState(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    INVALID = "invalid"


class ReferenceState(StrEnum):
    """Curation state of a reference slice. Only ``approved`` slices are ever retrieved."""

    CANDIDATE = "candidate"
    APPROVED = "approved"
    REVOKED = "revoked"


class ReferenceOrigin(StrEnum):
    """How a reference slice entered the library."""

    IMPORT = "import"  # a study plus SEG already received by the SCP, or files on the CLI
    UPLOAD = "upload"  # uploaded through the admin API
    FEEDBACK = "feedback"  # a radiologist-corrected SEG sent back to the SCP


class CandidateState(StrEnum):
    """A batch of candidate reference slices (one import or one correction) awaiting review."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Role(StrEnum):
    """API roles, each including the ones below it: admin > reviewer > viewer."""

    VIEWER = "viewer"
    REVIEWER = "reviewer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class JobKind(StrEnum):
    SEGMENT = "segment"
    DELIVER = "deliver"
    # embed the slices of an upload, a received study + SEG, or a correction as candidates
    EMBED_REFERENCES = "embed_references"
    # after approval: precompute what the backend needs of the approved slices (memories,
    # image encodings) so that segment jobs find it
    PREPARE_REFERENCES = "prepare_references"


class JobState(StrEnum):
    """queued -> running -> succeeded | failed | dead (retries exhausted: dead letter)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retrying with backoff
    DEAD = "dead"  # retries exhausted


class SegmentationType(StrEnum):
    BINARY = "BINARY"
    LABELMAP = "LABELMAP"
