"""The need model's registry (模型登记): every trained version in MLflow, promotion, and
loading only the file that was registered.

MLflow 3.17 tracking and model registry on a SQLite database under the home
(``Settings.model_registry_uri``; artifacts in ``Settings.models_dir``), no server, telemetry
off. A version is one MLflow run holding the model file (``model/``), its metrics (the
backtest's summary), the features it reads (``features.json``), the lake snapshot it was
trained on (tag), the backtest and fairness tables (CSV) and a model card
(``model_card.md``). Nothing per person is logged: no ``input_example``, no feature rows;
the tables are per need and per group (a frame with a person column is refused).

The model file's SHA-256 is recorded when the version is registered and checked on every
load and before promotion: a changed file refuses to load, naming the version. Promotion
moves the ``promoted`` alias; who approves it (the two-person rule) is the caller's
business (``pipelines/cli_models.py`` asks the share service's admin operations).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import polars as pl

from catalog.errors import StreethubError
from catalog.settings import Settings
from marts.need_model.spec import HORIZON_DAYS, KEYS, NEEDS

if TYPE_CHECKING:
    from masking.audit.log import AuditLog

# before mlflow is imported anywhere through this module (it is imported lazily below)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

MODEL_NAME = "need_model"  # the need classifiers, one file
FORECAST_MODEL = "grid_forecast"  # the grid demand forecast
PROMOTED = "promoted"  # the registered model's alias of the version in use
MODEL_DIR = "model"  # the artifact folder of the model file
MODEL_FILE = "model.bin"  # the saved model as its save(path) wrote it, inside MODEL_DIR
PACKED_FILE = "model.bin.gz"  # a version registered before 2026-12-01: gzip-compressed
CARD, FEATURES, FAIRNESS, BACKTEST = (
    "model_card.md",
    "features.json",
    "fairness.csv",
    "backtest.csv",
)
LOADABLE_PREFIX = "marts."  # a class named by a version's tag is imported only from here
NO_ADMINS = "none needed: the share service has no administrators yet"
"""A promotion's approval when the two-person rule is not in force yet."""


class RegistryError(StreethubError):
    """A model version cannot be registered, found, promoted or loaded as asked."""


class SavableModel(Protocol):
    """What the registry needs of a trained model: it saves itself to a path."""

    def save(self, path: Path) -> None: ...


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, as the registry knows it."""

    name: str
    version: int
    run_id: str
    sha256: str
    lake_snapshot: str
    features: int
    metrics: dict[str, float]
    created_at: dt.datetime
    promoted: bool
    promoted_at: str | None
    promoted_by: str | None
    approval: str | None
    model_class: str | None
    training_cutoffs: tuple[dt.date, ...] = ()


def sha256_of(path: Path) -> str:
    """The SHA-256 of a model file; of a folder, over each file's relative path and digest."""
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    if not path.is_dir():
        raise RegistryError(f"the model file {path.name} is missing")
    lines = [
        f"{p.relative_to(path).as_posix()} {sha256_of(p)}"
        for p in sorted(path.rglob("*"))
        if p.is_file()
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def unpack(packed: Path, saved: Path) -> None:
    """A version registered before 2026-12-01 stored its file gzip-compressed (to keep
    LightGBM's number lists from a leak scanner's eyes, which also hid from it whatever
    else the file held, and whose compressed bytes at times read as an e-mail address):
    its file unpacked to ``saved``. A model now saves a text the scanner reads as it is
    (``marts.need_model.booster_doc``) and the registry stores it unchanged."""
    with gzip.open(packed, "rb") as src, open(saved, "wb") as dst:
        shutil.copyfileobj(src, dst)


def markdown_table(frame: pl.DataFrame, digits: int = 3) -> str:
    """A small frame (metrics, fairness per group) as a Markdown table."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "—" if v != v else f"{v:.{digits}f}"
        return "—" if v is None else str(v).replace("|", "\\|")

    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([head, rule, *rows])


def model_card(
    *,
    name: str,
    metrics: Mapping[str, float],
    features: Sequence[str],
    lake_snapshot: str,
    fairness: pl.DataFrame | None,
    data: str = "",
    limits: Sequence[str] = (),
    purpose: str | None = None,
) -> str:
    """The model card (Markdown): purpose (default: the need scores'), data, metrics,
    fairness (None: the model scores no person), limits and the PIPL art. 24 note that a
    score is advice, never an automatic decision."""
    needs = "\n".join(f"- `{code}` {label}" for code, label in NEEDS.items())
    purpose = purpose or (
        "For each resident (by pseudonym), the probability of each need in the "
        f"{HORIZON_DAYS} days after the cut-off, so that community workers can offer services "
        f"before residents ask (主动服务):\n\n{needs}"
    )
    fair = (
        "Not applicable: the model scores no person."
        if fairness is None
        else markdown_table(fairness)
    )
    shown_metrics = pl.DataFrame(
        {"metric": list(metrics), "value": [float(v) for v in metrics.values()]}
    )
    all_limits = [
        "Trained and checked on the street's own pseudonymised records; a street with other "
        "services or recording habits needs its own training and backtest.",
        "Groups with few residents have wide uncertainty in the fairness table.",
        "The population-stability (drift) check warns when the latest features move away "
        "from the training data: retrain and backtest before trusting the scores then.",
        *limits,
    ]
    return "\n\n".join(
        [
            f"# Model card: {name}",
            f"## Purpose\n\n{purpose}",
            f"## Data\n\nLake snapshot {lake_snapshot}; {len(features)} features as of each "
            "cut-off (nothing recorded or learned after it), keyed by the master resident "
            "index's pseudonym. No personal rows are kept with the model."
            + (f"\n\n{data}" if data else ""),
            "## Features\n\n" + ", ".join(f"`{f}`" for f in features),
            "## Metrics (backtest)\n\n" + markdown_table(shown_metrics),
            "## Fairness (per group)\n\n" + fair,
            "## Limits\n\n" + "\n".join(f"- {limit}" for limit in all_limits),
            "## Rights (PIPL art. 24)\n\nScores are advice to a community worker, who decides "
            "and acts; they are never an automatic decision about a resident. A resident who "
            "opted out of automated assessment is not scored, and the explanation of every "
            "score is retrievable by the worker who acts on it.",
        ]
    )


def _per_group_only(frame: pl.DataFrame, what: str) -> pl.DataFrame:
    """A table kept with the model holds aggregates, never a person's row."""
    personal = [c for c in frame.columns if c in KEYS[:1]]
    if personal:
        raise RegistryError(
            f"the {what} table holds a per-person column: refused", field=personal[0]
        )
    return frame


class Registry:
    """The need model's MLflow registry under the home."""

    def __init__(self, settings: Settings) -> None:
        settings.models_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.settings = settings
        self.uri = settings.model_registry_uri
        self.artifacts = (settings.models_dir / "artifacts").as_uri()
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its table-creation chatter
        logging.getLogger("alembic").setLevel(logging.WARNING)

        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(settings)

    # -- registering --------------------------------------------------------------------

    def _experiment(self, name: str) -> str:
        """The experiment this home's new runs go in. MLflow keeps an experiment's artifact
        location for good, and a run's artifacts go under it: once the home has moved (or
        was restored elsewhere), its runs go in an experiment of the home's own place, so
        that nothing is written where the home used to be."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None and found.artifact_location != self.artifacts:
            name = f"{name} @ {hashlib.sha256(self.artifacts.encode()).hexdigest()[:12]}"
            found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=self.artifacts)
        except MlflowException:  # made meanwhile by another process
            return self.client.get_experiment_by_name(name).experiment_id

    def _registered(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            with suppress(MlflowException):  # made meanwhile by another process
                self.client.create_registered_model(name, description="需求预测模型")

    def register(
        self,
        model: SavableModel,
        *,
        metrics: Mapping[str, float],
        features: Sequence[str],
        lake_snapshot: int | str,
        fairness: pl.DataFrame | None,
        backtest: pl.DataFrame | None = None,
        data: str = "",
        limits: Sequence[str] = (),
        training_cutoffs: Sequence[dt.date] = (),
        purpose: str | None = None,
        name: str = MODEL_NAME,
    ) -> ModelVersion:
        """Log one trained model as a new version of ``name``: file (and its SHA-256),
        metrics, features, lake snapshot and training cut-offs, backtest and fairness
        tables, model card."""
        for table, what in ((fairness, "fairness"), (backtest, "backtest")):
            if table is not None:
                _per_group_only(table, what)
        snapshot = str(lake_snapshot)
        card = model_card(name=name, metrics=metrics, features=features, lake_snapshot=snapshot,
                          fairness=fairness, data=data, limits=limits, purpose=purpose)  # fmt: skip
        kind = type(model)
        run = self.client.create_run(
            self._experiment(name),
            run_name=f"{name} {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}",
            tags={"lake_snapshot": snapshot, "features": str(len(features))},
        )
        run_id = run.info.run_id
        try:
            with tempfile.TemporaryDirectory(dir=self.settings.models_dir) as tmp:
                folder = Path(tmp) / MODEL_DIR
                folder.mkdir()
                model.save(folder / MODEL_FILE)
                if not (folder / MODEL_FILE).is_file():
                    raise RegistryError(f"the model's save() wrote no file {MODEL_FILE}")
                digest = sha256_of(folder / MODEL_FILE)
                self.client.log_artifacts(run_id, str(folder), MODEL_DIR)
                texts = {CARD: card, FEATURES: json.dumps(list(features), ensure_ascii=False)}
                tables = {FAIRNESS: fairness, BACKTEST: backtest}
                for file, text in texts.items():
                    (Path(tmp) / file).write_text(text, encoding="utf-8")
                for file, table in tables.items():
                    if table is not None:
                        table.write_csv(Path(tmp) / file)
                for file in [*texts, *(f for f, t in tables.items() if t is not None)]:
                    self.client.log_artifact(run_id, str(Path(tmp) / file))
            # one transaction of the store for all of them (a log_metric each: one each)
            from mlflow.entities import Metric

            stamp = int(time.time() * 1000)
            self.client.log_batch(
                run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()]
            )
            self.client.set_terminated(run_id)
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self._registered(name)
        made = self.client.create_model_version(
            name,
            f"{run.info.artifact_uri}/{MODEL_DIR}",
            run_id=run_id,
            tags={
                "sha256": digest,
                "lake_snapshot": snapshot,
                "model_class": f"{kind.__module__}:{kind.__qualname__}",
                "training_cutoffs": ",".join(str(c) for c in sorted(training_cutoffs)),
            },
            description=f"trained on lake snapshot {snapshot}",
        )
        return self.version(int(made.version), name=name)

    # -- reading ------------------------------------------------------------------------

    def _shown(self, mv, promoted: int | None) -> ModelVersion:
        run = self.client.get_run(mv.run_id)
        tags = mv.tags or {}
        return ModelVersion(
            name=mv.name,
            version=int(mv.version),
            run_id=mv.run_id,
            sha256=tags.get("sha256", ""),
            lake_snapshot=tags.get("lake_snapshot", ""),
            features=int(run.data.tags.get("features", "0")),
            metrics=dict(run.data.metrics),
            created_at=dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC),
            promoted=int(mv.version) == promoted,
            promoted_at=tags.get("promoted_at"),
            promoted_by=tags.get("promoted_by"),
            approval=tags.get("approval"),
            model_class=tags.get("model_class"),
            training_cutoffs=tuple(
                dt.date.fromisoformat(c) for c in tags.get("training_cutoffs", "").split(",") if c
            ),
        )

    def _promoted_number(self, name: str) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(name, PROMOTED).version)
        except MlflowException:  # no such model, or no version promoted
            return None

    def versions(self, name: str = MODEL_NAME) -> list[ModelVersion]:
        """Every registered version of ``name``, oldest first."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name = '{_checked_name(name)}'")
        except MlflowException:
            return []
        promoted = self._promoted_number(name)
        return sorted((self._shown(mv, promoted) for mv in found), key=lambda v: v.version)

    def version(self, version: int, name: str = MODEL_NAME) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(name, str(version))
        except MlflowException:
            raise RegistryError(f"model {name} has no version {version}") from None
        return self._shown(mv, self._promoted_number(name))

    def promoted(self, name: str = MODEL_NAME) -> ModelVersion | None:
        """The version in use, or None when none was promoted."""
        number = self._promoted_number(name)
        return None if number is None else self.version(number, name)

    def _artifact_uri(self, run_id: str) -> str:
        """Where a run's artifacts are now. MLflow records the absolute place they were
        logged at, ``<artifacts>/<run id>/artifacts`` under the home's models folder; a home
        moved or restored elsewhere keeps that layout, so the run's folder is taken under
        this home's when it is there, else as recorded (a store elsewhere)."""
        recorded = self.client.get_run(run_id).info.artifact_uri
        split = urlsplit(recorded)
        if split.scheme == "file":
            tail = PurePosixPath(unquote(split.path)).parts[-2:]
            here = self.settings.models_dir.joinpath("artifacts", *tail)
            if tail == (run_id, "artifacts") and here.is_dir():
                return here.as_uri()
        return recorded

    @contextmanager
    def _downloaded(self, mv: ModelVersion, path: str) -> Iterator[Path]:
        import mlflow.artifacts

        uri = f"{self._artifact_uri(mv.run_id)}/{path}"
        with tempfile.TemporaryDirectory(dir=self.settings.models_dir) as tmp:
            yield Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=tmp, tracking_uri=self.uri
                )
            )

    def text(self, version: int, file: str, name: str = MODEL_NAME) -> str:
        """A text artifact of a version (the model card, the features list)."""
        with self._downloaded(self.version(version, name), file) as path:
            return path.read_text(encoding="utf-8")

    def table(self, version: int, file: str, name: str = MODEL_NAME) -> pl.DataFrame | None:
        """A table artifact of a version (fairness, backtest); None when it has none."""
        from mlflow.exceptions import MlflowException

        try:
            with self._downloaded(self.version(version, name), file) as path:
                return pl.read_csv(path)
        except (MlflowException, OSError):
            return None

    def features(self, version: int, name: str = MODEL_NAME) -> list[str]:
        return json.loads(self.text(version, FEATURES, name))

    # -- the file: checked, promoted, loaded ---------------------------------------------

    @contextmanager
    def _checked_file(self, mv: ModelVersion) -> Iterator[Path]:
        """The version's model file, downloaded and checked against its recorded SHA-256."""
        with self._downloaded(mv, MODEL_DIR) as folder:
            stored = folder / MODEL_FILE
            if not stored.exists() and (folder / PACKED_FILE).exists():
                stored = folder / PACKED_FILE  # registered before 2026-12-01
            found = sha256_of(stored)
            if not mv.sha256 or found != mv.sha256:
                raise RegistryError(
                    f"model {mv.name} version {mv.version}: the model file's SHA-256 is "
                    f"{found[:12]}…, recorded {mv.sha256[:12] or 'none'}… — the file changed "
                    "after it was registered: refused to load"
                )
            yield stored

    def verify(self, version: int, name: str = MODEL_NAME) -> str:
        """The version's SHA-256 once its file checks (:class:`RegistryError` otherwise)."""
        mv = self.version(version, name)
        with self._checked_file(mv):
            return mv.sha256

    def promote(
        self,
        version: int,
        *,
        actor: str,
        approval: str,
        name: str = MODEL_NAME,
        audit: AuditLog | None = None,
    ) -> ModelVersion:
        """Make ``version`` the one in use, after checking its file; ``approval`` records
        what authorised it (the approved admin operation's id). On ``audit`` (the hub's
        log) a ``model.promote`` record: model, version, file digest, approval."""
        sha = self.verify(version, name)
        before = self._promoted_number(name)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for key, value in {"promoted_at": now, "promoted_by": actor, "approval": approval,
                           "promoted_sha256": sha}.items():  # fmt: skip
            self.client.set_model_version_tag(name, str(version), key, value)
        self.client.set_registered_model_alias(name, PROMOTED, str(version))
        if before is not None and before != version:
            self.client.set_model_version_tag(name, str(before), "superseded_at", now)
        if audit is not None:
            audit.append("model.promote", actor, model=name, version=version, sha256=sha,
                         approval=approval, replaced=before)  # fmt: skip
        return self.version(version, name)

    def load(
        self,
        version: int | None = None,
        *,
        loader: Callable[[Path], Any] | None = None,
        name: str = MODEL_NAME,
    ) -> tuple[ModelVersion, Any]:
        """The model of ``version`` (default: the promoted one), its file checked against the
        recorded SHA-256 first. ``loader`` reads the file (default: the registered class's
        ``load``, imported only from ``marts``)."""
        if version is None:
            mv = self.promoted(name)
            if mv is None:
                raise RegistryError(f"model {name} has no promoted version")
        else:
            mv = self.version(version, name)
        read = loader or _class_loader(mv)
        with self._checked_file(mv) as stored:
            if stored.name == PACKED_FILE:
                unpack(stored, stored.with_name(MODEL_FILE))
                stored = stored.with_name(MODEL_FILE)
            return mv, read(stored)


def _checked_name(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise RegistryError("a model name is letters, digits and underscores")
    return name


def _class_loader(mv: ModelVersion) -> Callable[[Path], Any]:
    module, _, qualname = (mv.model_class or "").partition(":")
    if not module.startswith(LOADABLE_PREFIX) or not qualname:
        raise RegistryError(
            f"model {mv.name} version {mv.version}: its class is not one of streethub's "
            "models; pass a loader"
        )
    kind: Any = importlib.import_module(module)
    for part in qualname.split("."):
        kind = getattr(kind, part)
    return kind.load
