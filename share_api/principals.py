"""share_api.principals: see share_api/README.md (being built)."""
