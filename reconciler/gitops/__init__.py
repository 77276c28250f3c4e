"""reconciler.gitops (see docs/architecture.md)."""
