"""streethub departments."""
