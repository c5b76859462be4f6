"""Jobs that ingest one department (file sources) or one pulled dataset."""

import dagster as dg

from catalog.model import FILE_CONNECTORS, Dataset, Department
from pipelines.defs.sources.specs import landing_key, raw_key, staged_key


def _keys(dept: str, ds: str) -> list[dg.AssetKey]:
    return [landing_key(dept, ds), raw_key(dept, ds), staged_key(dept, ds)]


def file_datasets(dept: Department) -> list[Dataset]:
    return [ds for ds in dept.datasets if ds.delivery.kind in FILE_CONNECTORS]


def pulled_datasets(dept: Department) -> list[Dataset]:
    return [ds for ds in dept.datasets if ds.delivery.kind not in FILE_CONNECTORS]


def dept_files_job(dept: Department):
    keys = [k for ds in file_datasets(dept) for k in _keys(dept.code, ds.code)]
    return dg.define_asset_job(
        f"ingest_{dept.code}_files",
        selection=dg.AssetSelection.assets(*keys),
        description=f"Land, load and gate every new file {dept.name_zh} delivered to its inbox.",
        tags={"dept": dept.code},
    )


def pull_job(dept: Department, ds: Dataset):
    return dg.define_asset_job(
        f"pull_{dept.code}__{ds.code}",
        selection=dg.AssetSelection.assets(*_keys(dept.code, ds.code)),
        description=f"Pull {ds.name_zh} from {dept.name_zh}, load it into raw and gate it.",
        tags={"dept": dept.code},
    )
