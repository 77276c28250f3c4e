"""The engine: converge a study's record to its spec through an adapter (loop, policies, lock)."""
