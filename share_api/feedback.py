"""share_api.feedback: see share_api/README.md (being built)."""
