"""streethub pipelines."""
