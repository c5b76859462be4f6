"""streethub marts."""
