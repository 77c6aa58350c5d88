"""AI providers: memory analysis, embeddings and grounded chat.

Every provider has an offline stand-in, so the service works with no API keys:

- `memlayer.ai.analyzers`: `get_analyzer(settings)` → `ClaudeAnalyzer` (`claude_analysis`:
  tool-forced structured output) or `HeuristicAnalyzer` (`heuristic_analysis`: deterministic
  heuristics). Both return the `AnalysisOutcome` of `memlayer.ai.analysis`.
- `memlayer.ai.embeddings`: `get_embedder(settings)` → `OpenAIEmbedder`, `LocalEmbedder`
  (sentence-transformers) or `HashEmbedder` (feature hashing). Rows are float32, L2-normalised.
- `memlayer.ai.chat`: `grounded_answer(message, memories, settings=...)` answers from the given
  memories with Anthropic, OpenAI or an offline summary.
- `memlayer.ai.tags`: `normalize_tag`, `reconcile_tags` (map proposals onto the user's tags).
- `memlayer.ai.resilience`: `CircuitBreaker`, `classify_exception`.

Cold start: `anthropic`, `openai` and `sentence_transformers` are imported only inside the
functions that call them, never when these modules are imported.
"""
