"""LLM tasks (versioned templates and their parsers) and, later, the judge backends."""
