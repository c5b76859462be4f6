"""Consent categories (授权同意类别): the one closed list every dataset and mart draws from.

A resident may choose how far their information is shared (seed §6.1, 用户可自主选择信息共享
范围): the share service records a choice per resident, per category and per recipient
kind, and every grant of a dataset or mart leaves out the residents who declined its
category. So each catalogue entry carries exactly one code of :class:`ConsentCategory`
(``consent_category`` in the department and mart YAML files); a mart also states the
lawful basis it rests on in words (``lawful_basis``).

The list is closed: a YAML file naming any other code fails to load. Adding a category is
a change here, with its Chinese label.
"""

from __future__ import annotations

from enum import StrEnum


class ConsentCategory(StrEnum):
    """What kind of resident information a dataset or mart holds, for residents' choices."""

    identity = "identity"
    health = "health"
    social_assistance = "social_assistance"
    social_security = "social_security"
    housing = "housing"
    education = "education"
    family = "family"
    public_service = "public_service"
    enforcement = "enforcement"
    public_safety = "public_safety"
    whereabouts = "whereabouts"
    automated_assessment = "automated_assessment"
    none = "none"

    @property
    def label_zh(self) -> str:
        """The category's Chinese name, as a resident sees it."""
        return LABELS_ZH[self]

    @property
    def personal(self) -> bool:
        """Whether it holds residents' information, so a resident's choice applies to it
        (``none``: no resident's information, or only what the law makes public)."""
        return self is not ConsentCategory.none

    @property
    def per_recipient(self) -> bool:
        """Whether a resident's choice is about one kind of recipient. Not for
        ``automated_assessment`` (自动化评估, PIPL art. 24: the right to refuse decisions by
        automated assessment): a refusal recorded for any kind stops the scoring and leaves
        the resident out of every read of a score or an alert list, whoever reads it."""
        return self is not ConsentCategory.automated_assessment


LABELS_ZH: dict[ConsentCategory, str] = {
    ConsentCategory.identity: "户籍与身份信息",
    ConsentCategory.health: "医疗健康信息",
    ConsentCategory.social_assistance: "社会救助与社会福利信息",
    ConsentCategory.social_security: "社会保险与就业信息",
    ConsentCategory.housing: "住房与不动产信息",
    ConsentCategory.education: "教育与未成年人信息",
    ConsentCategory.family: "婚姻家庭与收养信息",
    ConsentCategory.public_service: "诉求与政务服务信息",
    ConsentCategory.enforcement: "行政执法信息",
    ConsentCategory.public_safety: "应急与公共安全信息",
    ConsentCategory.whereabouts: "行踪与出入记录",
    ConsentCategory.automated_assessment: "自动化评估（需求预测评分与预警名单）",
    ConsentCategory.none: "不涉及居民个人信息",
}

# the categories a resident can make a choice about
PERSONAL_CATEGORIES = tuple(c for c in ConsentCategory if c.personal)


__all__ = ["LABELS_ZH", "PERSONAL_CATEGORIES", "ConsentCategory"]
