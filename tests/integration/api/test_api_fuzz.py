"""Property-based fuzzing of the OpenAPI contract (Schemathesis) on the real app and Postgres.

Every operation in ``openapi.json`` is fuzzed with valid and invalid inputs under three
identities: admin, viewer and anonymous. Checks: no 5xx, every status and content type
declared, every response body valid against its declared schema, auth enforced where
declared (anonymous), and no viewer write ever succeeds.

A fixed seed and a small example budget keep it near a minute; set ``RAFSS_FUZZ_EXAMPLES``
(default 20 per operation and mode) for a longer run.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

SEED = 20261207
EXAMPLES = int(os.environ.get("RAFSS_FUZZ_EXAMPLES", "20"))
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def api(pg_server_url, tmp_path_factory):
    """Its own database: the admin run writes random tasks, sources and routes."""
    from rafss_core.store.engine import make_engine, session_factory
    from tests.conftest import migrated_database
    from tests.integration.api.conftest import build_api

    with migrated_database(pg_server_url, "rafss_fuzz") as url:
        engine = make_engine(url)
        try:
            yield build_api(session_factory(engine), tmp_path_factory.mktemp("fuzz-data"))
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def fuzz_schema(api):
    return schemathesis.openapi.from_asgi("/openapi.json", api.client.app)


@pytest.mark.parametrize("identity", ["admin", "viewer", "anonymous"])
def test_contract(api, fuzz_schema, identity: str) -> None:
    headers = {} if identity == "anonymous" else api.headers(identity)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    if identity == "anonymous":
        checks.append(ignored_auth)
    sent = 0
    failures: list[str] = []

    for result in fuzz_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @seed(SEED)
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case) -> None:
                nonlocal sent
                sent += 1
                response = case.call_and_validate(headers=headers, checks=checks)
                if identity == "viewer" and case.method.upper() in WRITES:
                    assert not 200 <= response.status_code < 300, \
                        f"a viewer's {case.method} {case.path} succeeded"

            try:
                fuzz()
            except Unsatisfiable:  # no parameters to make invalid (GET /health, /metrics)
                assert mode == GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # one report per operation and mode, all collected
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    print(f"schemathesis seed {SEED}: {sent} requests as {identity}")
    assert sent > 0
    assert not failures, "\n\n".join(failures)
