"""The process environment the local functions see.

All functions run in one process, so their template `Environment.Variables` are merged into
one `os.environ` (a variable two functions set differently is reported). Rules:

* template values win, except that an empty template value (an empty parameter default such
  as `AnthropicApiKey: ""`) never clobbers what the developer already exported;
* an empty-string variable is removed, so the settings see "unset" (None), not "";
* `ENVIRONMENT=local`; AWS SDK settings point at moto with dummy credentials;
* execute-api URLs of this template's APIs become the local server's URLs (so
  `WS_MANAGEMENT_ENDPOINT` reaches the local management API);
* explicit overrides (`env_overrides=`, `--env`, `--env-file`) win over everything; an
  override of "" or None unsets the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .stack import Stack, localize_urls

DUMMY_CREDENTIAL = "testing"
# Variables that would make boto3 look for real credentials or another endpoint.
_AWS_VARS_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)
_UPPER_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass
class EnvPlan:
    """What to set and unset in os.environ."""

    set_vars: dict[str, str] = field(default_factory=dict)
    unset_vars: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    template_names: set[str] = field(default_factory=set)

    def apply(self, environ: dict[str, str] | None = None) -> None:
        import os

        target = os.environ if environ is None else environ
        for name in self.unset_vars:
            target.pop(name, None)
        target.update(self.set_vars)


def plan_environment(
    stack: Stack,
    *,
    moto_endpoint: str,
    http_base: str,
    ws_paths: Mapping[str, str],
    current: Mapping[str, str],
    overrides: Mapping[str, str | None] | None = None,
    region: str = "us-east-1",
    consumed: set[str] | frozenset[str] = frozenset(),
) -> EnvPlan:
    """Compute the environment for all functions of `stack` (see the module docstring).
    `consumed` variables became template parameters (secrets): unless the template sets them
    itself, the functions do not see them."""
    plan = EnvPlan()
    http_ids = {api.api_id for api in stack.http_apis.values()}

    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for logical_id in sorted(stack.functions):
        for name, value in stack.functions[logical_id].environment.items():
            value = localize_urls(value, http_base, ws_paths, http_ids)
            if name in merged and merged[name] != value:
                plan.warnings.append(
                    f"env {name}: {owner[name]} sets {merged[name]!r} but {logical_id} sets "
                    f"{value!r}; all functions share one process, using {owner[name]}'s"
                )
                continue
            merged.setdefault(name, value)
            owner.setdefault(name, logical_id)
    plan.template_names = set(merged)

    for name, value in merged.items():
        if value == "":
            # Keep what the developer exported; drop an exported empty string.
            if current.get(name) == "":
                plan.unset_vars.add(name)
        else:
            plan.set_vars[name] = value

    plan.set_vars["ENVIRONMENT"] = "local"
    plan.set_vars.update(
        {
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
            "AWS_SESSION_TOKEN": DUMMY_CREDENTIAL,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
        }
    )
    plan.unset_vars.update(name for name in _AWS_VARS_TO_CLEAR if name in current)
    for name in current:
        if name.startswith("AWS_ENDPOINT_URL_"):
            plan.unset_vars.add(name)  # a service-specific endpoint would bypass moto
    for name, value in {
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_XRAY_SDK_ENABLED": "false",
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    }.items():
        if name not in current:
            plan.set_vars[name] = value

    # Empty exported variables read as None, not "", by the settings model.
    for name, value in current.items():
        if value == "" and _UPPER_NAME.match(name) and name not in plan.set_vars:
            plan.unset_vars.add(name)

    for name, value in (overrides or {}).items():
        if value is None or value == "":
            plan.set_vars.pop(name, None)
            plan.unset_vars.add(name)
        else:
            plan.set_vars[name] = str(value)
            plan.unset_vars.discard(name)
    for name in consumed - set(merged):
        plan.set_vars.pop(name, None)
        if name in current:
            plan.unset_vars.add(name)
    plan.unset_vars -= set(plan.set_vars)
    return plan


def read_env_file(path: str | Path) -> dict[str, str]:
    """Parse a dotenv-style file (KEY=VALUE, optional quotes, # comments, `export `)."""
    values: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name.strip()] = value
    return values
