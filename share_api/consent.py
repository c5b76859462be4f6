"""share_api.consent: see share_api/README.md (being built)."""
