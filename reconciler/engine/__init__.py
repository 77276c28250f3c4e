"""reconciler.engine (see docs/architecture.md)."""
