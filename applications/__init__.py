"""Applications of distilled sets; they use the core only through its public API."""
