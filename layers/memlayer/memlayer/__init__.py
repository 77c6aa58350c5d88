"""memlayer's shared domain package: settings, models, auth, storage, AI, pipeline, search."""
