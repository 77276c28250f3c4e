"""reconciler.schedulers (see docs/architecture.md)."""
