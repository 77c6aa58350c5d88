"""The settings model reads the environment the way the template and the local cloud set it."""

from __future__ import annotations

import pytest

from memlayer.settings import ConfigurationError, Settings, get_settings


def _settings_from(monkeypatch, environment: dict[str, str]) -> Settings:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.fixture
def fresh_settings():
    get_settings.cache_clear()
    yield get_settings
    get_settings.cache_clear()


def test_fields_come_from_their_variables_in_any_case(monkeypatch) -> None:
    settings = _settings_from(
        monkeypatch,
        {
            "TABLE_NAME": "memlayer-prod",
            "embedding_dimensions": "256",
            "SCRUB_STORED_CONTENT": "false",
            "PROVIDER_TIMEOUT_SECONDS": "2.5",
            "ANTHROPIC_API_KEY": "sk-ant",
        },
    )
    assert settings.table_name == "memlayer-prod"
    assert settings.embedding_dimensions == 256
    assert settings.scrub_stored_content is False
    assert settings.provider_timeout_seconds == 2.5
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant"
    assert "sk-ant" not in repr(settings)


def test_renamed_variables_and_comma_separated_lists(monkeypatch) -> None:
    settings = _settings_from(
        monkeypatch,
        {
            "POWERTOOLS_METRICS_NAMESPACE": "memlayer-dev",
            "METRICS_NAMESPACE": "ignored: not this field's variable",
            "CORS_ORIGINS": "chrome-extension://abc, https://app.example ,",
            "DLQ_URLS": "",
        },
    )
    assert settings.metrics_namespace == "memlayer-dev"
    assert settings.cors_origins == ["chrome-extension://abc", "https://app.example"]
    assert settings.dlq_urls == []


def test_explicit_values_win_over_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CHAT_PROVIDER", "anthropic")
    monkeypatch.setenv("FETCH_ALLOW_HOSTS", "a.example")
    settings = Settings(chat_provider="offline", fetch_allow_hosts="b.example,c.example")
    assert settings.chat_provider == "offline"
    assert settings.fetch_allow_hosts == ["b.example", "c.example"]
    with pytest.raises(ValueError, match="frozen"):
        settings.chat_provider = "openai"  # type: ignore[misc]


def test_unknown_variables_are_ignored(monkeypatch) -> None:
    monkeypatch.setenv("SOMETHING_ELSE", "x")
    assert not hasattr(Settings(), "something_else")


def test_bad_configuration_names_the_variable(monkeypatch, fresh_settings) -> None:
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "lots")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "")
    monkeypatch.setenv("CHAT_PROVIDER", "gemini")
    with pytest.raises(ConfigurationError) as caught:
        fresh_settings()
    message = str(caught.value)
    assert "EMBEDDING_DIMENSIONS:" in message
    assert "CHAT_PROVIDER:" in message
    # A valid empty string is a value, not an error.
    assert "POWERTOOLS_METRICS_NAMESPACE" not in message


def test_supabase_needs_a_database(monkeypatch, fresh_settings) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "supabase")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL_ARN", raising=False)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        fresh_settings()
    monkeypatch.setenv("database_url", "postgresql://u@127.0.0.1/db")
    get_settings.cache_clear()
    settings = fresh_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://u@127.0.0.1/db"
