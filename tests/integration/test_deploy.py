"""Deploy checks: template.yaml expanded by aws-sam-translator (what `sam deploy` hands to
CloudFormation) has none of the blockers a first deploy would hit, and each function's role
grants what it needs and no more. The next blocker of this kind fails here, not in a deploy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from infra.localcloud.iam import expand_template, stack_roles
from infra.localcloud.stack import build_stack
from infra.localcloud.template import load_template

ROOT = Path(__file__).resolve().parents[2]
RAW = load_template(ROOT / "template.yaml")
PARAMS = {"SupabaseJwtSecret": "s", "AnthropicApiKey": "a", "OpenAiApiKey": "o"}
EXPANDED = expand_template(RAW, PARAMS, "us-east-1")
RESOURCES: dict[str, Any] = EXPANDED["Resources"]
STACK = build_stack(ROOT / "template.yaml", PARAMS)
ROLES, ROLE_WARNINGS = stack_roles(STACK, {})
ARN = STACK.resolver.arn
SECRET_PARAMETERS = {n for n, p in RAW["Parameters"].items() if p.get("NoEcho")}


def _of_type(rtype: str) -> dict[str, Any]:
    return {lid: r for lid, r in RESOURCES.items() if r["Type"] == rtype}


def _refs(value: Any) -> set[str]:
    """Every name a value refers to (Ref, GetAtt, ${...} in Sub)."""
    text = json.dumps(value)
    names = set(re.findall(r'"Ref": "([^"]+)"', text))
    names |= set(re.findall(r'"Fn::GetAtt": \["([^"]+)"', text))
    names |= set(re.findall(r"\$\{([A-Za-z0-9:]+)", text))
    return names


def test_no_secret_parameter_reaches_a_function_environment() -> None:
    assert {"SupabaseJwtSecret", "AnthropicApiKey", "OpenAiApiKey"} <= SECRET_PARAMETERS
    functions = _of_type("AWS::Lambda::Function")
    assert len(functions) == 14
    for lid, function in functions.items():
        variables = (function["Properties"].get("Environment") or {}).get("Variables") or {}
        assert not _refs(variables) & SECRET_PARAMETERS, lid
        assert not {"SUPABASE_JWT_SECRET", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"} & set(variables)
    # The secrets live in Secrets Manager, and only there.
    stored = {
        lid: r["Properties"]["SecretString"]
        for lid, r in _of_type("AWS::SecretsManager::Secret").items()
    }
    assert {next(iter(_refs(v))) for v in stored.values()} == SECRET_PARAMETERS


def test_each_function_reads_only_the_secrets_it_needs() -> None:
    secret_arn = {name: ARN(lid) for lid, name in [("JwtSecret", "jwt")]}
    jwt = secret_arn["jwt"]
    authenticating = {
        "MemoriesFunction",
        "CaptureFunction",
        "RetrievalFunction",
        "UploadsFunction",
        "AccountFunction",
        "AdminFunction",
        "McpFunction",
        "WebSocketFunction",
    }
    for lid, role in ROLES.items():
        assert role.allows("secretsmanager:GetSecretValue", jwt) == (lid in authenticating), lid
    anthropic = ARN("AnthropicApiKeySecret")
    openai = ARN("OpenAiApiKeySecret")
    assert {
        lid for lid, r in ROLES.items() if r.allows("secretsmanager:GetSecretValue", anthropic)
    } == {
        "AnalyzeFunction",
        "RetrievalFunction",
    }
    assert {
        lid for lid, r in ROLES.items() if r.allows("secretsmanager:GetSecretValue", openai)
    } == {
        "EmbedFunction",
        "McpFunction",  # query embeddings for search_memories and get_context
        "RetrievalFunction",
    }


def test_least_privilege_on_the_table() -> None:
    assert ROLE_WARNINGS == []
    table = ARN("Table")
    retrieval = ROLES["RetrievalFunction"]
    assert retrieval.allows("dynamodb:UpdateItem", table)  # the rate-limit counter
    assert retrieval.allows("dynamodb:Query", f"{table}/index/GSI1")
    assert not retrieval.allows("dynamodb:DeleteItem", table)
    assert not retrieval.allows("dynamodb:PutItem", table)
    assert ROLES["HealthFunction"].allows("dynamodb:DescribeTable", table)
    assert not ROLES["HealthFunction"].allows("dynamodb:GetItem", table)
    # Only the functions that page through everything may Scan.
    scanners = {lid for lid, r in ROLES.items() if r.allows("dynamodb:Scan", table)}
    assert scanners == {"AdminFunction", "CleanupFunction"}
    # Nothing gets the whole service or every table.
    for lid, role in ROLES.items():
        assert not role.allows("dynamodb:GetItem", ARN("Table") + "-other"), lid
        assert not role.allows("dynamodb:DeleteTable", table), lid


def test_search_index_snapshots_are_reachable_only_where_they_are_used() -> None:
    bucket = ARN("UploadsBucket")
    snapshot = f"{bucket}/index/u%40x/snapshot"
    searchers = {"RetrievalFunction", "McpFunction"}
    for lid, role in ROLES.items():
        assert role.allows("s3:PutObject", snapshot) == (lid in searchers), lid
    for lid in searchers:
        assert ROLES[lid].allows("s3:GetObject", snapshot), lid
    # A memory delete discards the snapshot; an erase deletes the user's whole folder.
    for lid in ("MemoriesFunction", "McpFunction", "AccountFunction", "RetrievalFunction"):
        assert ROLES[lid].allows("s3:DeleteObject", snapshot), lid
    assert ROLES["AccountFunction"].allows("s3:ListBucket", bucket)
    retrieval = ROLES["RetrievalFunction"]
    assert not retrieval.allows("s3:GetObject", f"{bucket}/uploads/u/01/file.txt")
    assert not retrieval.allows("s3:ListBucket", bucket)  # no listing of users' folders
    variables = RESOURCES["RetrievalFunction"]["Properties"]["Environment"]["Variables"]
    assert _refs(variables["UPLOADS_BUCKET"]) == {"UploadsBucket"}
    rules = RESOURCES["UploadsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"Prefix": "index/", "ExpirationInDays": 7} in [
        {k: r.get(k) for k in ("Prefix", "ExpirationInDays")} for r in rules
    ]


def test_pushes_are_allowed_where_progress_is_sent() -> None:
    api = STACK.ws_apis["WebSocketApi"]
    connections = f"arn:aws:execute-api:us-east-1:123456789012:{api.api_id}/{api.stage}"
    # A push posts to the connection; a subscription whose credential ended is deleted.
    for method in ("POST", "DELETE"):
        connection = f"{connections}/{method}/@connections/c"
        pushers = {
            lid for lid, r in ROLES.items() if r.allows("execute-api:ManageConnections", connection)
        }
        assert {"TasksFunction", "AnalyzeFunction", "EmbedFunction", "ExtractFunction"} <= pushers
        assert "RetrievalFunction" not in pushers


def test_names_are_derived_from_the_stack() -> None:
    """A constant name stops a second stack (dev and prod in one account) from creating."""
    schedules = _of_type("AWS::Scheduler::Schedule")
    assert schedules
    named = {
        "AWS::Scheduler::Schedule": "Name",
        "AWS::S3::Bucket": "BucketName",
        "AWS::Logs::LogGroup": "LogGroupName",
        "AWS::ApiGatewayV2::Api": "Name",
        "AWS::SQS::Queue": "QueueName",
        "AWS::DynamoDB::Table": "TableName",
        "AWS::SNS::Topic": "TopicName",
        "AWS::SecretsManager::Secret": "Name",
    }
    for lid, resource in RESOURCES.items():
        prop = named.get(resource["Type"])
        if prop and prop in resource["Properties"]:
            assert "AWS::StackName" in _refs(resource["Properties"][prop]), lid


def test_the_alarm_topic_can_receive_cloudwatch_alarms() -> None:
    (topic,) = _of_type("AWS::SNS::Topic").values()
    key_id = topic["Properties"].get("KmsMasterKeyId")
    if key_id is None:
        return  # no SSE: CloudWatch can publish
    assert key_id == {"Ref": "AlarmKey"}, "an AWS-managed key (alias/aws/sns) refuses CloudWatch"
    statements = RESOURCES["AlarmKey"]["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [
        s for s in statements if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"
    ]
    assert cloudwatch
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])


def test_rules_refuse_a_stack_that_cannot_verify_tokens() -> None:
    rules = EXPANDED["Rules"]
    assert "TokensCanBeVerified" in rules
    assert build_stack(ROOT / "template.yaml", PARAMS).resolver.failed_rules() == []
    refused = build_stack(ROOT / "template.yaml").resolver.failed_rules()
    assert [r.split(":")[0] for r in refused] == ["TokensCanBeVerified"]
    jwks = build_stack(ROOT / "template.yaml", {"SupabaseJwksUrl": "https://x/jwks"})
    assert jwks.resolver.failed_rules() == []
    prod = build_stack(ROOT / "template.yaml", {**PARAMS, "Stage": "prod"})
    assert [r.split(":")[0] for r in prod.resolver.failed_rules()] == ["ProdServesTheRealExtension"]
    real = {**PARAMS, "Stage": "prod", "AllowedOrigins": "chrome-extension://abcdefgh"}
    assert build_stack(ROOT / "template.yaml", real).resolver.failed_rules() == []


def test_data_outlives_the_stack() -> None:
    for lid in ("UploadsBucket", "Table"):
        assert RESOURCES[lid]["DeletionPolicy"] == "Retain", lid
        assert RESOURCES[lid]["UpdateReplacePolicy"] == "Retain", lid


def test_every_queue_has_a_dead_letter_queue_and_alarms() -> None:
    queues = _of_type("AWS::SQS::Queue")
    dlqs = {lid for lid in queues if lid.endswith("DLQ")}
    alarms = _of_type("AWS::CloudWatch::Alarm").values()

    def alarmed(metric: str, queue: str) -> bool:
        return any(
            a["Properties"].get("MetricName") == metric
            and queue in _refs(a["Properties"].get("Dimensions"))
            and a["Properties"]["AlarmActions"]
            for a in alarms
        )

    for lid, queue in queues.items():
        if lid in dlqs:
            assert alarmed("ApproximateNumberOfMessagesVisible", lid), lid
        else:
            target = queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
            assert target["Fn::GetAtt"][0] in dlqs, lid
            assert alarmed("ApproximateAgeOfOldestMessage", lid), lid


def test_function_errors_throttles_and_api_5xx_are_alarmed() -> None:
    alarms = {lid: a["Properties"] for lid, a in _of_type("AWS::CloudWatch::Alarm").items()}
    functions = set(_of_type("AWS::Lambda::Function"))
    for metric in ("Errors", "Throttles"):
        summed = [
            a
            for a in alarms.values()
            if any(
                m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == metric
                for m in a.get("Metrics", [])
            )
        ]
        # A metric-math alarm may read at most 10 metrics (a hard CloudWatch limit).
        assert all(sum("MetricStat" in m for m in a["Metrics"]) <= 10 for a in summed), metric
        covered = {
            next(iter(_refs(m["MetricStat"])))
            for a in summed
            for m in a["Metrics"]
            if "MetricStat" in m
        }
        assert covered == functions, metric
    assert any(
        a.get("MetricName") == "5xx" and a["Namespace"] == "AWS/ApiGateway" for a in alarms.values()
    )
    for a in alarms.values():
        assert a["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_tracing_is_on_only_with_the_xray_sdk_in_the_layer() -> None:
    requirements = (ROOT / "layers" / "deps" / "requirements.txt").read_text()
    for lid, function in _of_type("AWS::Lambda::Function").items():
        if (function["Properties"].get("TracingConfig") or {}).get("Mode") == "Active":
            assert re.search(r"^aws-xray-sdk==", requirements, re.M), lid


def test_samconfig_has_one_section_per_environment_and_no_prod_placeholder() -> None:
    config = (ROOT / "samconfig.toml").read_text()
    dev = config.split("[default.deploy.parameters]", 1)[1].split("[prod", 1)[0]
    prod = config.split("[prod.deploy.parameters]", 1)[1]
    assert 'stack_name = "memlayer-prod"' in config
    assert 'Stage=\\"dev\\"' in dev and 'Stage=\\"prod\\"' in prod
    assert "chrome-extension://memlayer-dev" not in prod
    for name in SECRET_PARAMETERS:
        assert f"{name}=" not in config  # secrets are never written down


SUPABASE_PARAMS = {
    **PARAMS,
    "StorageBackend": "supabase",
    "DatabaseUrl": "postgresql://memlayer:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
    "SupabaseUrl": "https://project.supabase.co",
    "SupabaseServiceRoleKey": "service-role-key",
}


def test_supabase_backend_reads_its_database_url_and_service_key_from_secrets() -> None:
    stack = build_stack(ROOT / "template.yaml", SUPABASE_PARAMS)
    roles, _ = stack_roles(stack, {})
    resolve = stack.resolver.resolve
    database = stack.resolver.arn("DatabaseUrlSecret")
    service_key = stack.resolver.arn("ServiceRoleKeySecret")
    assert len(stack.functions) == 14
    for function in stack.functions.values():
        variables = function.environment
        assert variables["STORAGE_BACKEND"] == "supabase"
        # the secrets' ARNs, never their values
        assert variables["DATABASE_URL_ARN"] == database
        assert not {"DATABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"} & set(variables)
        assert SUPABASE_PARAMS["DatabaseUrl"] not in json.dumps(variables)
        is_account = function.logical_id == "AccountFunction"
        assert (variables.get("SUPABASE_SERVICE_ROLE_KEY_ARN") == service_key) == is_account
    # every function reaches storage (health pings it); only erasure deletes Auth users
    assert {
        lid for lid, r in roles.items() if r.allows("secretsmanager:GetSecretValue", database)
    } == set(roles)
    assert {
        lid for lid, r in roles.items() if r.allows("secretsmanager:GetSecretValue", service_key)
    } == {"AccountFunction"}
    assert (
        resolve(stack.resolver.resources["DatabaseUrlSecret"]["Properties"]["SecretString"])
        == (SUPABASE_PARAMS["DatabaseUrl"])
    )


def test_the_table_and_the_rights_on_it_exist_only_for_dynamodb() -> None:
    table = ARN("Table")
    assert STACK.resolver.resource_exists("Table")
    # every function reaches storage (health describes the table, the rest read it)
    assert {
        lid
        for lid, r in ROLES.items()
        if r.allows("dynamodb:Query", table) or r.allows("dynamodb:DescribeTable", table)
    } == set(ROLES)
    assert {f.environment["TABLE_NAME"] for f in STACK.functions.values()} == {
        STACK.resolver.resolve({"Ref": "Table"})
    }
    stack = build_stack(ROOT / "template.yaml", SUPABASE_PARAMS)
    roles, warnings = stack_roles(stack, {})
    assert warnings == []
    assert not stack.resolver.resource_exists("Table")
    assert not stack.resolver.condition("UsesDynamoDB")
    assert RAW["Outputs"]["TableName"]["Condition"] == "UsesDynamoDB"
    actions = ["GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "Scan", "DescribeTable"]
    for lid, role in roles.items():
        # the ARN the table has in the DynamoDB stack: nothing grants any right on it
        for action in actions:
            assert not role.allows(f"dynamodb:{action}", table), (lid, action)
            assert not role.allows(f"dynamodb:{action}", f"{table}/index/GSI1"), (lid, action)
    assert {f.environment["TABLE_NAME"] for f in stack.functions.values()} == {""}


def test_dynamodb_backend_has_no_database_secret() -> None:
    assert not STACK.resolver.resource_exists("DatabaseUrlSecret")
    assert not STACK.resolver.resource_exists("ServiceRoleKeySecret")
    for function in STACK.functions.values():
        assert function.environment["STORAGE_BACKEND"] == "dynamodb"
        assert function.environment["DATABASE_URL_ARN"] == ""


def test_rules_refuse_supabase_without_a_database_url() -> None:
    without = {**SUPABASE_PARAMS, "DatabaseUrl": ""}
    failed = build_stack(ROOT / "template.yaml", without).resolver.failed_rules()
    assert [r.split(":")[0] for r in failed] == ["SupabaseNeedsADatabase"]
    assert build_stack(ROOT / "template.yaml", SUPABASE_PARAMS).resolver.failed_rules() == []
