"""What the protocol's routes keep per process (``share_api.kept``): a grant's
current version and its files are answered from memory while nothing they depend on moved,
and never stand in for what changed since."""

from __future__ import annotations

import pytest

from share_api import consent
from share_api.sharing import files, versions
from share_api.sharing.errors import SharingError
from tests.share_api.test_sharing_versions import KIND, a_resident, make_grant


def choose(service, resident: str, choice: str) -> None:
    consent.record_choice(service, pseudonym=resident, category="health", recipient_kind=KIND,
                          choice=choice, channel="counter", actor="test")  # fmt: skip


def test_a_state_that_comes_back_is_a_new_version_though_its_old_one_was_kept(service) -> None:
    grant = make_grant(service)
    v0 = versions.current_version(service, grant, KIND)
    assert versions.current_version(service, grant, KIND) == v0  # kept
    resident = a_resident(service)
    choose(service, resident, "declined")
    v1 = versions.current_version(service, grant, KIND)
    choose(service, resident, "allowed")  # what v0 showed, again
    v2 = versions.current_version(service, grant, KIND)
    assert [v.version for v in (v0, v1, v2)] == [0, 1, 2]
    assert v2.state == v0.state != v1.state
    assert [v.version for v in versions.history(service, grant)] == [0, 1, 2]


def test_a_kept_list_of_files_found_gone_is_made_again(service) -> None:
    grant = make_grant(service)
    version = versions.current_version(service, grant, KIND)
    (made,) = files.files_of(service, grant, version, KIND)
    assert files.files_of(service, grant, version, KIND) == [made]  # kept
    files.path_of(service, made).unlink()  # gone behind the process's back
    with pytest.raises(SharingError) as gone:
        files.plain_bytes(service, made)
    assert gone.value.status == 404
    (again,) = files.files_of(service, grant, version, KIND)  # found gone: made again
    assert again.id == made.id and files.path_of(service, again) is not None
    assert files.plain_bytes(service, again)[:4] == b"PAR1"
