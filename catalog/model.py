"""The typed model of the street data resource catalogue (街道数据资源目录).

One YAML file per department holds the department and its datasets; each
dataset carries the national catalogue fields (政务信息资源目录编制指南), how it
is delivered, and its data items (fields) with their classification level,
PII kind and masking rule. Everything downstream reads this model: nothing
about a dataset is hard-coded elsewhere.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from catalog.codes import Codes, code_table
from catalog.consent import ConsentCategory
from catalog.identifiers import uscc_valid_str

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
# A department code (部门代码) names its YAML file, its inbox folder, its Dagster group and the
# middle of every asset key (``raw/<dept>/<dataset>``): lower-case ASCII letters and digits,
# 2–16 characters, starting with a letter — a pinyin abbreviation such as ``gaj`` or ``cl``.
# No underscore, so ``dept__dataset`` splits one way only; no upper case, so two files never
# differ by case alone; a leading letter, so it is a valid Python and SQL identifier.
DEPARTMENT_CODE = re.compile(r"[a-z][a-z0-9]{1,15}")  # matched whole (fullmatch)


class Level(StrEnum):
    """Level within general data: L1 public … L4 highly sensitive."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"

    @property
    def rank(self) -> int:
        return int(self.value[1])

    @property
    def sensitive(self) -> bool:
        """L3 or L4: encrypted at rest, masked when it leaves, never in a reason or a log.

        The one place that decides "sensitive" for a level; compare with this, not ranks.
        """
        return self.rank >= 3


class DataGrade(StrEnum):
    """GB/T 43697-2024 grade of a dataset: core / important / general data."""

    core = "core"
    important = "important"
    general = "general"


class ShareType(StrEnum):
    """共享类型: unconditional (无条件), conditional (有条件), not shareable (不予共享)."""

    unconditional = "unconditional"
    conditional = "conditional"
    not_shareable = "not_shareable"


class OpenAttribute(StrEnum):
    """开放属性."""

    open = "open"
    conditional_open = "conditional_open"
    not_open = "not_open"


class Entity(StrEnum):
    """人 person, 房 house, 事 event, 物 thing."""

    person = "person"
    house = "house"
    event = "event"
    thing = "thing"


class UpdateCycle(StrEnum):
    realtime = "realtime"
    hourly = "hourly"
    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"
    quarterly = "quarterly"
    yearly = "yearly"

    @property
    def cron(self) -> str:
        """A cron schedule for pulling a source with this update cycle."""
        return {
            "realtime": "*/15 * * * *",
            "hourly": "5 * * * *",
            "daily": "30 1 * * *",
            "weekly": "30 1 * * 1",
            "monthly": "30 1 1 * *",
            "quarterly": "30 1 1 1,4,7,10 *",
            "yearly": "30 1 1 1 *",
        }[self.value]

    @property
    def max_age(self) -> dt.timedelta:
        """How old the newest delivery may be before the dataset counts as stale."""
        return {
            "realtime": dt.timedelta(hours=1),
            "hourly": dt.timedelta(hours=3),
            "daily": dt.timedelta(days=2),
            "weekly": dt.timedelta(days=9),
            "monthly": dt.timedelta(days=35),
            "quarterly": dt.timedelta(days=100),
            "yearly": dt.timedelta(days=380),
        }[self.value]


class FieldType(StrEnum):
    """Logical type of a data item after standardisation (staged zone)."""

    string = "string"
    text = "text"  # free text that may hide PII (appeals, reports)
    integer = "integer"
    decimal = "decimal"
    boolean = "boolean"
    date = "date"
    datetime = "datetime"


PERSON_NAME_CONCEPT = "person.name"


class PiiKind(StrEnum):
    """What kind of personal information a field holds (drives masking and scanning)."""

    none = "none"
    citizen_id = "citizen_id"
    person_name = "person_name"
    mobile = "mobile"
    landline = "landline"
    address = "address"
    bank_card = "bank_card"
    email = "email"
    plate = "plate"
    birth_date = "birth_date"
    gender = "gender"
    health = "health"
    financial = "financial"
    location = "location"
    minor = "minor"
    specific_identity = "specific_identity"  # disability, subsidy status, low income
    biometric = "biometric"
    free_text = "free_text"  # may contain any of the above
    credit_code = "credit_code"  # unified social credit code (organisations)
    # number of an identity document other than the citizen ID: 居住证, 社保卡, 残疾人证 (a
    # citizen ID + 2 digits), 护照, 驾驶证 … — sensitive (GB/T 35273-2020 Annex B)
    id_document = "id_document"


# PII kinds that PIPL art. 28 (and, for identity documents, GB/T 35273-2020 Annex B) calls
# sensitive personal information: never below L3.
SENSITIVE_PII = frozenset(
    {
        PiiKind.citizen_id,
        PiiKind.id_document,
        PiiKind.bank_card,
        PiiKind.health,
        PiiKind.financial,
        PiiKind.location,
        PiiKind.minor,
        PiiKind.specific_identity,
        PiiKind.biometric,
    }
)
# Direct identifiers of a person: at least L3.
DIRECT_IDENTIFIERS = frozenset(
    {PiiKind.citizen_id, PiiKind.person_name, PiiKind.mobile, PiiKind.bank_card, PiiKind.email}
)


class MaskingRule(StrEnum):
    """How a field leaves the protected zones (marts, shares, logs)."""

    none = "none"  # public or non-personal
    pseudonymise = "pseudonymise"  # keyed HMAC, joinable
    encrypt = "encrypt"  # AES-GCM, readable with authority only
    suppress = "suppress"  # dropped / NULL
    mask_id = "mask_id"  # 110105********002X
    mask_document = "mask_document"  # 110105**********2X01, E1*****78: identity documents
    mask_mobile = "mask_mobile"  # 138****5678
    mask_name = "mask_name"  # 张*
    mask_address = "mask_address"  # cut to the community
    mask_bank_card = "mask_bank_card"
    mask_email = "mask_email"
    mask_plate = "mask_plate"
    generalise_age = "generalise_age"  # age bands
    generalise_year = "generalise_year"  # birth date → year
    generalise_month = "generalise_month"  # date → month
    generalise_grid = "generalise_grid"  # coordinates → grid cell
    generalise_flag = "generalise_flag"  # a specific identity or health value → holds one: yes/no
    scrub_text = "scrub_text"  # free-text PII scrubbing


class ConnectorKind(StrEnum):
    sql_db = "sql_db"
    excel = "excel"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"
    http_api = "http_api"


FILE_CONNECTORS = frozenset(
    {
        ConnectorKind.excel,
        ConnectorKind.csv,
        ConnectorKind.json,
        ConnectorKind.jsonl,
        ConnectorKind.parquet,
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


# What exports write for "no value" in a cell (缺失值占位符); compared after trimming, in
# half-width, in any letter case. A field whose allowed_values list one of them keeps it.
DEFAULT_PLACEHOLDERS = (
    "无", "不详", "未知", "暂无", "空", "NULL", "None", "N/A", "-", "--", "—", "/", "\\",
)  # fmt: skip


class SlashDates(StrEnum):
    """How a department's exports order ``31/10/2026`` (a year last): day or month first."""

    day_first = "day_first"  # 31/10/2026
    month_first = "month_first"  # 10/31/2026


class MonthDates(StrEnum):
    """What a date field's month-only value (``2026年10月``, ``2026-10``) becomes."""

    first_of_month = "first_of_month"  # 2026-10-01, counted as a month_precision repair
    quarantine = "quarantine"  # unreadable as a date: the row is quarantined


class Standardising(_Strict):
    """A department's (or dataset's) export habits the standardisers repair (标准化规则).

    Given on the department, it holds for all its datasets; a dataset's own block
    overrides the keys it sets. Everything has a default, so most departments say nothing.
    """

    placeholders: tuple[str, ...] = Field(
        default=DEFAULT_PLACEHOLDERS,
        description="cell values meaning 'no value' (无, 不详, NULL, -, / …): staged as null, "
        "so an optional field stays empty and a required one is quarantined as blank",
    )
    extra_placeholders: tuple[str, ...] = Field(
        default=(),
        description="placeholders added to the list above (e.g. 未测 of a health check export), "
        "so a department need not repeat the defaults",
    )
    slash_dates: SlashDates = Field(
        default=SlashDates.day_first, description="order of d/m/yyyy dates (31/10/2026)"
    )
    month_dates: MonthDates = Field(
        default=MonthDates.first_of_month,
        description="a month-only date: the month's first day (counted), or quarantined; "
        "a birth date is always exact, so a month-only birth date is quarantined",
    )
    unknown_dates: tuple[dt.date, ...] = Field(
        default=(dt.date(1900, 1, 1),),
        description="dates exports write for 'unknown' (1900-01-01): staged as null",
    )

    @field_validator("placeholders", "extra_placeholders")
    @classmethod
    def _placeholders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [p for p in v if not p.strip() or p != p.strip()]
        if bad:
            raise ValueError("a placeholder must be non-blank, without surrounding spaces")
        return v


class Range(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is greater than max {self.max}")
        return self


class FieldSpec(_Strict):
    """A data item (数据项) of a dataset."""

    name: str = Field(description="English snake_case name used in the lake")
    label_zh: str = Field(description="Chinese label (数据项名称)")
    source: str | None = Field(
        default=None, description="column / header / key as delivered; default: name"
    )
    type: FieldType
    required: bool = False
    unique: bool = False
    pattern: str | None = None
    allowed_values: list[str] | None = None
    codes: str | dict[str, str | None] | None = Field(
        default=None,
        description="代码表: the codes the department's system writes for the allowed values, "
        "staged as the value each stands for: a table's name (GB/T 2261.1, catalog/codes.py) "
        "or a mapping of its own (01: 已受理); a code mapped to null stands for no value",
    )
    range: Range | None = None
    pii: PiiKind = PiiKind.none
    level: Level
    masking: MaskingRule = MaskingRule.none
    quasi_identifier: bool = False
    authoritative: bool = Field(
        default=False, description="this department is the authoritative source (权威来源)"
    )
    concept: str | None = Field(
        default=None,
        description="shared concept across departments, e.g. person.birth_date; "
        "joins golden records and consistency checks",
    )
    checks: list[str] = Field(default_factory=list, description="named custom checks")
    unit: str | None = Field(
        default=None,
        description="计量单位 of a number, e.g. 元, 元/月, m²: exports may write it after the "
        "value (2400元), and for money (元) a ¥/￥/RMB before it; the standardiser strips both",
    )
    description: str | None = None

    @property
    def source_name(self) -> str:
        return self.source or self.name

    @property
    def code_values(self) -> Codes:
        """The field's codes as a mapping (empty: none): its table's, or its own."""
        if self.codes is None:
            return {}
        return code_table(self.codes) if isinstance(self.codes, str) else self.codes

    @property
    def person_name(self) -> bool:
        """The field holds a person's name: its PII kind says so, or its concept (a pupil's
        name is ``pii: minor``, ``concept: person.name``)."""
        return self.pii is PiiKind.person_name or self.concept == PERSON_NAME_CONCEPT

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"field name {v!r} must be snake_case ASCII (a-z, 0-9, _)")
        return v

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"pattern {v!r} does not compile: {exc}") from None
        return v

    @field_validator("allowed_values")
    @classmethod
    def _non_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("allowed_values must list at least one value")
        return v

    @model_validator(mode="after")
    def _codes(self) -> FieldSpec:
        if self.codes is None:
            return self
        if self.type not in (FieldType.string, FieldType.text) or not self.allowed_values:
            raise ValueError("codes stand for allowed values: a string field with allowed_values")
        if isinstance(self.codes, str):
            try:
                code_table(self.codes)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        elif not self.codes:
            raise ValueError("codes must map at least one code")
        allowed = set(self.allowed_values)
        for code, value in self.code_values.items():
            if not code.strip() or code != code.strip():
                raise ValueError(f"code {code!r} must be non-blank, without surrounding spaces")
            if value is not None and value not in allowed:
                raise ValueError(f"code {code!r} stands for {value!r}, not an allowed value")
            if code in allowed and value != code:
                raise ValueError(f"code {code!r} is itself an allowed value: it cannot stand "
                                 f"for {value!r}")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _coherent(self) -> FieldSpec:
        if self.pii in SENSITIVE_PII and not self.level.sensitive:
            what, basis = (
                ("an identity-document number, ", "GB/T 35273-2020 Annex B")
                if self.pii is PiiKind.id_document
                else ("", "PIPL art. 28")
            )
            raise ValueError(
                f"PII kind {self.pii.value} is {what}sensitive personal information ({basis}): "
                f"level must be L3 or L4, not {self.level.value}"
            )
        if self.pii in DIRECT_IDENTIFIERS and not self.level.sensitive:
            raise ValueError(
                f"PII kind {self.pii.value} identifies a person: level must be L3 or L4, "
                f"not {self.level.value}"
            )
        if self.level.sensitive and self.masking is MaskingRule.none:
            raise ValueError(f"an {self.level.value} field needs a masking rule, not 'none'")
        if self.unit is not None and self.type not in (FieldType.integer, FieldType.decimal):
            raise ValueError(f"unit applies to integer or decimal fields, not {self.type.value}")
        if self.range is not None and self.type not in (FieldType.integer, FieldType.decimal):
            raise ValueError(f"range applies to integer or decimal fields, not {self.type.value}")
        if self.concept is not None and not re.match(r"^[a-z_]+\.[a-z_]+$", self.concept):
            raise ValueError(f"concept {self.concept!r} must look like entity.attribute")
        return self


def header_key(name: str) -> str:
    """How a delivered column's name is matched to a field's ``source``: NFKC-folded
    (full-width letters, digits and brackets and the ideographic space to their plain
    forms), with a byte-order mark and every space and line break removed. Exports write
    one header many ways: 姓　　名 padded to a form's width, 联系电话（手机） for
    联系电话(手机), a line break inside an Excel header cell."""
    return "".join(unicodedata.normalize("NFKC", name.replace("\ufeff", "")).split())


HTTP_PAGING = ("page_param", "page_size_param", "first_page", "more_path", "total_path",
               "status_path", "status_ok", "method", "token_header")  # fmt: skip


class Delivery(_Strict):
    """How the department delivers the dataset, and the connector that reads it."""

    kind: ConnectorKind
    # file connectors: glob under inbox/<dept>/
    pattern: str | None = None
    encoding: str | None = None  # csv: utf-8, utf-8-sig, gbk …
    delimiter: str | None = None
    sheet: str | None = None  # excel
    header_row: int | None = Field(default=None, ge=0, description="0-based header row (excel)")
    records_path: str | None = None  # json, http_api: dotted path to the list of records
    lines_terminated: bool = Field(
        default=True,
        description=(
            "csv/jsonl: the department's exporter ends every line, the last one included; "
            "a last record without its line end is then quarantined as possibly truncated "
            "(set false for an exporter that leaves the last line open)"
        ),
    )
    # sql_db
    table: str | None = None
    cursor_column: str | None = None
    # http_api
    endpoint: str | None = None
    page_size: int | None = Field(default=None, gt=0, le=10_000)
    cursor_param: str | None = None
    cursor_field: str | None = None
    # http_api: the department's paging protocol, where it is not the hub's reference API
    # (?page=1&page_size=500 → {"items": [...], "has_more": true}); records_path too
    page_param: str | None = Field(default=None, description="the page number's parameter (page)")
    page_size_param: str | None = Field(
        default=None, description="the page size's parameter (page_size)"
    )
    first_page: int | None = Field(
        default=None, ge=0, le=1, description="the first page's number: 1 (default) or 0"
    )
    more_path: str | None = Field(
        default=None,
        description="dotted path to the answer's 'more pages follow' flag (has_more, unless "
        "total_path is given)",
    )
    total_path: str | None = Field(
        default=None,
        description="dotted path to the answer's count of all records (data.total): the pull "
        "ends once that many are received",
    )
    status_path: str | None = Field(
        default=None,
        description="dotted path to the answer's status code (code), for an API that answers "
        "HTTP 200 with an error inside",
    )
    status_ok: list[str | int] | None = Field(
        default=None, description="the status codes that mean success, as text (default: 0)"
    )
    method: Literal["get", "post"] | None = Field(
        default=None,
        description="get (default): the parameters in the query; post: in a JSON body, as "
        "data-sharing platforms' query interfaces take them",
    )
    token_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9-]*$",
        description="the header carrying the token as it is (X-Access-Token); default: "
        "Authorization: Bearer <token>",
    )

    @model_validator(mode="after")
    def _options_for_kind(self) -> Delivery:
        needed: dict[ConnectorKind, tuple[str, ...]] = {
            ConnectorKind.sql_db: ("table",),
            ConnectorKind.excel: ("pattern", "sheet"),
            ConnectorKind.csv: ("pattern", "encoding"),
            ConnectorKind.json: ("pattern",),
            ConnectorKind.jsonl: ("pattern",),
            ConnectorKind.parquet: ("pattern",),
            ConnectorKind.http_api: ("endpoint", "page_size"),
        }
        missing = [k for k in needed[self.kind] if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.kind.value} delivery needs: {', '.join(missing)}")
        paging = [k for k in HTTP_PAGING if getattr(self, k) is not None]
        if paging and self.kind is not ConnectorKind.http_api:
            raise ValueError(f"{', '.join(paging)}: for an http_api delivery only")
        if self.status_ok is not None and self.status_path is None:
            raise ValueError("status_ok needs status_path (where the answer holds its status)")
        if self.encoding is not None:
            import codecs

            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"unknown encoding {self.encoding!r}") from None
        return self


class UpdateMode(StrEnum):
    """How a delivery relates to what is already staged (更新方式).

    ``snapshot``: each delivery is the whole dataset and replaces the last.
    ``upsert``: a record whose key is staged replaces the staged version when it is newer
    (by the dataset's ``update_cursor``, or by arrival without one).
    ``append``: events; a key never repeats.
    """

    snapshot = "snapshot"
    upsert = "upsert"
    append = "append"


# field types an update cursor may have: they order versions of a record
CURSOR_TYPES = frozenset({FieldType.datetime, FieldType.date, FieldType.integer})


class Dataset(_Strict):
    """A data resource (数据资源) as the national catalogue describes it."""

    code: str = Field(description="English snake_case dataset code, unique in the department")
    resource_code: str = Field(description="资源代码, unique across the catalogue")
    name_zh: str
    name_en: str
    entity: Entity
    summary: str
    format: str = Field(description="资源格式 as delivered: database, xlsx, csv, json …")
    update_cycle: UpdateCycle
    share_type: ShareType
    share_conditions: str | None = None
    share_method: Literal["api", "file", "database", "delta_sharing"] = "api"
    legal_basis: str | None = None
    consent_category: ConsentCategory = Field(
        description="授权同意类别: the kind of resident information it holds (catalog/consent.py); "
        "residents who declined it are left out of its grants"
    )
    open_attribute: OpenAttribute = OpenAttribute.not_open
    release_date: dt.date
    related_resources: list[str] = Field(default_factory=list)
    grade: DataGrade = DataGrade.general
    key: list[str] = Field(description="fields that identify a row (the business key)")
    update_mode: UpdateMode = Field(
        description="snapshot | upsert | append: how a delivery meets what is already staged"
    )
    delivery: Delivery
    fields: list[FieldSpec]
    update_cursor: str | None = Field(
        default=None,
        description="upsert only: the datetime, date or integer field whose larger value is the "
        "newer version of a record (without it, the later delivery wins)",
    )
    standardising: Standardising | None = Field(
        default=None, description="export habits to repair; the department's block, then defaults"
    )

    @field_validator("code")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"dataset code {v!r} must be snake_case ASCII")
        return v

    @field_validator("update_cursor")
    @classmethod
    def _cursor(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        mode = info.data.get("update_mode")
        if mode is not None and mode is not UpdateMode.upsert:
            raise ValueError(
                f"{v!r}: a cursor orders versions of a record, so it applies to update_mode "
                f"upsert, not {mode.value}"
            )
        fields = {f.name: f for f in info.data.get("fields") or []}
        if not fields:  # the fields themselves are invalid: reported there
            return v
        if v not in fields:
            raise ValueError(f"{v!r} is not a field of the dataset")
        f = fields[v]
        if f.type not in CURSOR_TYPES:
            raise ValueError(
                f"{v!r} is a {f.type.value} field; a cursor must be a datetime, date or integer"
            )
        if f.level.sensitive:
            raise ValueError(
                f"{v!r} is {f.level.value}: versions are compared in staged without decrypting, "
                "so a cursor must be an L1 or L2 field"
            )
        if v in (info.data.get("key") or []):
            raise ValueError(f"{v!r} is part of the key, so it cannot order versions of a record")
        return v

    @property
    def rules(self) -> Standardising:
        """The standardisers' rules for this dataset (its block over its department's)."""
        return self.standardising or Standardising()

    @property
    def max_level(self) -> Level:
        return max((f.level for f in self.fields), key=lambda lv: lv.rank)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @model_validator(mode="after")
    def _coherent(self) -> Dataset:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate field name(s): {', '.join(dupes)}")
        sources = [f.source_name for f in self.fields]
        keys = [header_key(n) for n in sources]
        dupes = sorted({n for n, k in zip(sources, keys, strict=True) if keys.count(k) > 1})
        if dupes:
            raise ValueError(
                f"duplicate source column(s): {', '.join(dupes)} "
                "(a delivered header is matched without spaces, full-width forms folded)"
            )
        unknown = [k for k in self.key if k not in names]
        if unknown:
            raise ValueError(f"key names unknown field(s): {', '.join(unknown)}")
        if not self.fields:
            raise ValueError("a dataset needs at least one field")
        if self.share_type is ShareType.unconditional:
            l4 = [f.name for f in self.fields if f.level is Level.L4]
            if l4:
                raise ValueError(
                    f"L4 field(s) {', '.join(l4)} cannot be in an unconditional (无条件共享) "
                    "dataset: make it conditional or move the fields"
                )
        if self.share_type is ShareType.conditional and not self.share_conditions:
            raise ValueError("a conditional (有条件共享) dataset must state its share_conditions")
        if self.share_type is ShareType.not_shareable and not self.legal_basis:
            raise ValueError("a not-shareable (不予共享) dataset must state its legal_basis")
        d = self.delivery
        if d.kind is ConnectorKind.http_api and d.cursor_field and d.cursor_field not in sources:
            raise ValueError(f"delivery cursor_field {d.cursor_field!r} is not a source column")
        if d.kind is ConnectorKind.sql_db and d.cursor_column and d.cursor_column not in sources:
            raise ValueError(f"delivery cursor_column {d.cursor_column!r} is not a source column")
        return self


class Department(_Strict):
    code: str
    name_zh: str
    name_en: str
    provider_code: str = Field(description="提供方代码 (unified social credit code)")
    owner: str = Field(description="e-mail or team:x of the data owner, for Dagster")
    datasets: list[Dataset]
    standardising: Standardising | None = Field(
        default=None, description="export habits of every dataset (a dataset may override keys)"
    )

    @model_validator(mode="before")
    @classmethod
    def _datasets_inherit_rules(cls, data: Any) -> Any:
        """Each dataset's standardising block = the department's, overridden key by key."""
        if not isinstance(data, dict) or not isinstance(
            data.get("standardising"), dict | Standardising
        ):
            return data
        own = data["standardising"]
        base = own.model_dump(exclude_unset=True) if isinstance(own, Standardising) else own
        merged = []
        for ds in data.get("datasets") or []:
            if isinstance(ds, Dataset):
                mine = ds.standardising.model_dump(exclude_unset=True) if ds.standardising else {}
                ds = ds.model_copy(update={"standardising": Standardising(**{**base, **mine})})
            elif isinstance(ds, dict):
                mine = ds.get("standardising")
                if mine is None or isinstance(mine, dict):
                    ds = {**ds, "standardising": {**base, **(mine or {})}}
            merged.append(ds)
        return {**data, "datasets": merged}

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not DEPARTMENT_CODE.fullmatch(v):
            raise ValueError(
                f"department code {v!r} must be 2–16 lower-case ASCII letters or digits, "
                "starting with a letter"
            )
        return v

    @field_validator("provider_code")
    @classmethod
    def _uscc(cls, v: str) -> str:
        if not uscc_valid_str(v):
            raise ValueError(
                "not a valid unified social credit code (GB 32100-2015: 18 characters over "
                "0-9 and A-Y without I, O, S, V, Z, and a valid check character)"
            )
        return v

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str) -> str:
        if not (v.startswith("team:") or re.match(r"^[^@\s]+@[^@\s]+\.[a-z]+$", v)):
            raise ValueError(f"owner {v!r} must be an e-mail or team:name")
        return v


def dataset_table(dept: str, dataset: str) -> str:
    """A dataset's table in the lake's raw and staged zones: ``<dept>__<dataset>`` (a
    department's code has no underscore, so the name splits one way only)."""
    return f"{dept}__{dataset}"


class Catalogue(BaseModel):
    """The whole catalogue: every department and its datasets."""

    model_config = ConfigDict(frozen=True)

    departments: dict[str, Department]
    sources: dict[str, str] = Field(default_factory=dict, description="dept code → YAML path")

    def datasets(self) -> list[tuple[Department, Dataset]]:
        return [(d, ds) for d in self.departments.values() for ds in d.datasets]

    def dataset(self, ref: str) -> tuple[Department, Dataset]:
        """Look up by ``dept.dataset``, ``dept/dataset``, ``dept__dataset`` or resource code."""
        norm = ref.replace("/", ".").replace("__", ".")
        for d, ds in self.datasets():
            if norm == f"{d.code}.{ds.code}" or ref == ds.resource_code:
                return d, ds
        raise KeyError(ref)

    def as_dict(self) -> dict[str, Any]:
        return {code: d.model_dump(mode="json") for code, d in self.departments.items()}
