"""Repositories: small functions over a :class:`sqlalchemy.orm.Session`.

They flush but never commit; the caller owns the transaction::

    with factory.begin() as session:
        record_instance(session, record)
"""

from rafss_core.store.repositories.audit import audit
from rafss_core.store.repositories.instances import (
    InstanceGeometry,
    InstanceRecord,
    RecordedInstance,
    record_instance,
)
from rafss_core.store.repositories.references import (
    InvalidTransitionError,
    add_reference_slice,
    approve_reference_slice,
    create_reference_set,
    load_reference_slices,
    revoke_reference_slice,
)
from rafss_core.store.repositories.tasks import LabelSpec, create_task

__all__ = [
    "InstanceGeometry",
    "InstanceRecord",
    "InvalidTransitionError",
    "LabelSpec",
    "RecordedInstance",
    "add_reference_slice",
    "approve_reference_slice",
    "audit",
    "create_reference_set",
    "create_task",
    "load_reference_slices",
    "record_instance",
    "revoke_reference_slice",
]
