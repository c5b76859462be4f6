"""streethub lakehouse."""
