"""share_api.alerts: see share_api/README.md (being built)."""
