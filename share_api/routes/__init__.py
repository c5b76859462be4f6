"""The service's routers, one module a concern; ``share_api.app`` includes them all."""

ROUTERS = (
    "auth",
    "catalogue",
    "requests",
    "grants",
    "data",
    "consent",
    "feedback",
    "attention",
    "admin",
    "audit",
    "analyst_sql",
    "worklist",
)
