"""Domain logic, above storage: what the functions' thin entry points call."""
