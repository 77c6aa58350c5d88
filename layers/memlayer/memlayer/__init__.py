"""memlayer's shared domain package: settings, models, auth, storage, AI providers, pipeline, search."""
