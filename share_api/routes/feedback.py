"""HTTP routes: feedback (反馈) — ratings of a grant's data and correction requests
(校核纠错) with the owner's answers. The rules are :mod:`share_api.feedback`; here only HTTP."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from share_api import feedback as fb
from share_api.deps import PrincipalDep, ServiceDep

router = APIRouter(tags=["feedback"])

Problem = Literal[tuple(fb.PROBLEMS)]  # type: ignore[valid-type]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRating(_Body):
    grant_id: str = Field(max_length=40)
    score: int = Field(ge=1, le=5, description="1 (unusable) to 5 (fit for its purpose)")
    note: str | None = Field(default=None, max_length=fb.MAX_NOTE)


class NewCorrection(_Body):
    grant_id: str = Field(max_length=40)
    record_column: str = Field(
        max_length=64,
        description="a granted column naming the record: a pseudonymised one, or an L1/L2 "
        "column shown in clear",
    )
    record: str = Field(
        max_length=128, description="its value in the record, as your data shows it"
    )
    field: str = Field(max_length=64, description="the granted column whose value is in doubt")
    problem: Problem = Field(description="; ".join(f"{k}: {v}" for k, v in fb.PROBLEMS.items()))
    note: str | None = Field(default=None, max_length=fb.MAX_NOTE)


class Answer(_Body):
    decision: Literal[fb.DECISIONS]  # type: ignore[valid-type]
    answer: str | None = Field(
        default=None, max_length=fb.MAX_NOTE, description="required for a rejection"
    )


@router.post("/feedback/ratings", status_code=201)
def rate(body: NewRating, principal: PrincipalDep, service: ServiceDep) -> dict[str, Any]:
    """Rate the data received under a grant your organisation holds."""
    return fb.rate(service, principal, body.grant_id, body.score, body.note)


@router.get("/feedback/ratings")
def ratings(
    principal: PrincipalDep, service: ServiceDep, grant_id: str = Query(max_length=40)
) -> list[dict[str, Any]]:
    """The ratings of a grant your organisation holds."""
    return fb.list_ratings(service, principal, grant_id)


@router.post("/corrections", status_code=201)
def file_correction(
    body: NewCorrection, principal: PrincipalDep, service: ServiceDep
) -> dict[str, Any]:
    """File a correction request (校核纠错) on one record's field of a grant's data; it goes
    to the owner department, which answers within the answer deadline."""
    return fb.file_correction(
        service,
        principal,
        body.grant_id,
        record_column=body.record_column,
        record=body.record,
        field=body.field,
        problem=body.problem,
        note=body.note,
    )


@router.get("/corrections")
def corrections(
    principal: PrincipalDep,
    service: ServiceDep,
    status: Literal["open", "answered"] | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Corrections your organisation filed or answers (a data officer: all), newest first."""
    return fb.list_corrections(service, principal, status=status, limit=limit)


@router.get("/corrections/{correction_id}")
def correction(correction_id: str, principal: PrincipalDep, service: ServiceDep) -> dict[str, Any]:
    return fb.get_correction(service, correction_id, principal)


@router.post("/corrections/{correction_id}/answer")
def answer(
    correction_id: str, body: Answer, principal: PrincipalDep, service: ServiceDep
) -> dict[str, Any]:
    """The owner department's answer: accepted, or rejected with its reason."""
    return fb.answer_correction(service, principal, correction_id, body.decision, body.answer)
