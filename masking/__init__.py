"""streethub masking."""
