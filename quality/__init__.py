"""streethub quality."""
