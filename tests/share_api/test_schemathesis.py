"""Must-show (issue 14): schemathesis, run against the committed OpenAPI spec
(``share_api/openapi.json``) and a real uvicorn server, finds no 5xx: every operation gets
cases that fit the spec and cases that do not, signed in as a person holding every role
(so the deepest paths run), path ids sometimes a real grant's."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis import GenerationMode

from share_api.service import Service
from tests.share_api.audit_support import built_mart, standing_grant

SPEC = Path(__file__).parents[2] / "share_api" / "openapi.json"
EXAMPLES = 10  # per operation and mode: ~45 operations, most in both modes: ~600 calls
ROLES = ("requester", "reviewer", "data_officer", "auditor", "admin")


def test_no_5xx_from_schemathesis(server, service: Service, people, mart_street):
    schema = schemathesis.openapi.from_dict(json.loads(SPEC.read_text(encoding="utf-8")))
    person = people.make("wjw", *ROLES)
    mart = built_mart(mart_street)
    real = {
        "grant_id": standing_grant(service, "wjw", mart, 2),
        "seq": service.audit.record("data.read", person.actor, grant="g", rows=0)["seq"],
    }
    session = requests.Session()
    failures: list[str] = []
    calls: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        inputs = operation.path_parameters, operation.query, operation.body
        modes = [GenerationMode.POSITIVE]
        if any(len(x) for x in inputs):  # something to break: cases that do not fit
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            made, bad = fuzz(operation, mode, person.headers, server.url, session, real)
            calls[operation.label] = calls.get(operation.label, 0) + made
            failures += bad
    total = sum(calls.values())
    print(f"schemathesis: {total} calls over {len(operations)} operations, 5xx: {len(failures)}")
    assert [label for label, n in calls.items() if n == 0] == []  # every operation called
    assert total >= len(operations) * EXAMPLES / 2
    assert failures == [], "\n".join(failures[:20])
    assert server.thread.is_alive()


def fuzz(operation, mode, headers, base_url, session, real) -> tuple[int, list[str]]:
    """Up to EXAMPLES cases of ``operation`` in ``mode`` sent to the server: how many were
    sent, and the 5xx answers."""
    sent: list[int] = []
    failures: list[str] = []

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @given(case=operation.as_strategy(mode, headers=dict(headers)), data=st.data())
    def run(case, data) -> None:
        for name, value in real.items():
            if name in (case.path_parameters or {}) and data.draw(st.booleans()):
                case.path_parameters[name] = value
        response = case.call(base_url=base_url, session=session, timeout=30)
        sent.append(response.status_code)
        if response.status_code >= 500:
            failures.append(
                f"{response.status_code} {case.method} {case.formatted_path} ({mode}): "
                f"{response.text[:200]}"
            )

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()  # Unsatisfiable: every way to break the operation's inputs was tried
    return len(sent), failures
