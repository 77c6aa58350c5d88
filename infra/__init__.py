"""Developer infrastructure (local cloud, tooling). Not deployed."""
