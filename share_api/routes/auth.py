"""HTTP routes: auth (see share_api/README.md for the owner of this module)."""

from fastapi import APIRouter

router = APIRouter()
