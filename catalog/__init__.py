"""streethub catalog."""
