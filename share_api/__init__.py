"""streethub share_api."""
