"""share_api.requests: see share_api/README.md (being built)."""
