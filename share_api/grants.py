"""share_api.grants: see share_api/README.md (being built)."""
