"""Delivery protocols: one :class:`Sender` per protocol, chosen by the destination's.

A sender sends result files (the SEG and its volume report) to one destination and returns one
:class:`SendOutcome` per file; the delivery loop (:mod:`services.scu`) records them with the
same backoff and dead-letter rules whatever the protocol. A new protocol is one module here and
one entry in :data:`SENDERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rafss_core.store.repositories.deliveries import DestinationInfo


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one file.

    ``status`` is the protocol's own code (a DIMSE status for C-STORE, an HTTP status or the
    STOW-RS FailureReason for STOW-RS), None when nothing answered; ``permanent`` means that
    resending the same file cannot help (dead-letter at once).
    """

    path: str
    status: int | None
    delivered: bool
    error: str | None = None
    permanent: bool = False


class Sender(Protocol):
    protocol: str

    def send(self, destination: DestinationInfo, paths: Sequence[str]) -> list[SendOutcome]:
        """Send ``paths`` (in one association / request where the protocol allows)."""
        ...


def _cstore() -> Sender:
    from services.senders.cstore import CStoreSender

    return CStoreSender()


def _stowrs() -> Sender:
    from services.senders.stowrs import StowRsSender

    return StowRsSender()


SENDERS: dict[str, Callable[[], Sender]] = {"c-store": _cstore, "stow-rs": _stowrs}


def sender_for(protocol: str) -> Sender:
    """The sender of a destination's protocol.

    Raises:
        ValueError: an unknown protocol.
    """
    try:
        return SENDERS[protocol]()
    except KeyError:
        raise ValueError(f"unknown delivery protocol {protocol!r}; use one of "
                         f"{', '.join(SENDERS)}") from None
