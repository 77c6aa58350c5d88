"""schemathesis against the local cloud, from the committed contract (docs/openapi.json):
valid and invalid requests for every operation, a fixed seed (deterministic generation) and a
bounded number of examples. Every answer must be documented for its operation (status,
content type, body schema) and none may be a server error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ROOT, User, make_user

EXAMPLES_PER_OPERATION = 10

# /mcp is left out: its body is JSON-RPC handled by memlayer.mcp_protocol, which answers the
# streamable HTTP transport's own statuses and error bodies (tests/unit/test_mcp_protocol.py and
# tests/integration/test_mcp.py cover it).
schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json").exclude(path="/mcp")
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES_PER_OPERATION,
    deterministic=True,  # the same requests on every run
    database="none",
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzer(cloud: Any) -> Iterator[User]:
    made = make_user(cloud)
    yield made
    made.http.close()


@schema.parametrize()
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: Any, cloud: Any, fuzzer: User
) -> None:
    case.call_and_validate(
        base_url=cloud.base_url,
        headers={"Authorization": f"Bearer {fuzzer.token}"},
        checks=CHECKS,
        timeout=30,
    )
