"""A key ring's home moving under it: the old layout (a master key inside the home) is
migrated out of it, and a home copied or moved to another path takes a key file of its own.

:class:`HomeMoves` is a mixin of :class:`masking.keys.ring.KeyRing`; it runs once per
ring object, on its first read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.keys.providers import EnvProvider, FileProvider
from masking.keys.store import shred, unb64
from masking.suite import Suite, get_suite

log = logging.getLogger("streethub.keys")


def own_key_file_of(settings: Settings) -> tuple[str, Path, Path] | None:
    """``(id, key file, home)`` this home would have by its own path, when the key file is
    the default one (named by the home id); None with an explicit ``key_file``."""
    if settings.key_file is not None:
        return None
    recorded = settings.key_file_abs
    own = settings.path_home_id
    return own, recorded.parent.with_name(own) / recorded.name, settings.home_abs


class HomeMoves:
    """The migrations a key ring makes when its home is of the old layout or moved."""

    @property
    def _legacy_master_path(self) -> Path:
        return self.keys_dir / "master.json"

    # -- the old layout ------------------------------------------------------------------
    def _check_legacy(self) -> None:
        if self._legacy_checked:
            return
        self._legacy_checked = True
        if self._legacy_master_path.exists():
            self._migrate()

    def _migrate(self) -> None:
        """Move the master key out of the home (old layout: ``keys/master.json``)."""
        with self._locked():
            path = self._legacy_master_path
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                old = {kid: unb64(k) for kid, k in data["versions"].items()}
                old_current = data["current"]
            except FileNotFoundError:
                return
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                raise KeyRingError(f"cannot read the old master key file {path}") from None
            legacy = EnvProvider()
            for key in old.values():
                legacy.add(key)
            state = self._read_ring() or {"current": {}, "keys": {}}
            if (
                isinstance(self.provider, FileProvider)
                and not self.provider.exists()
                and old_current in old
            ):
                for key in old.values():  # the same key, moved: shares and kids unchanged
                    self.provider.add(key)
                self.provider.retire(old_current)
            plain = {
                (p, int(v)): self._unwrap(
                    p, int(v), e, legacy if e["kid"] in old else self.provider
                )
                for p, vs in state["keys"].items()
                for v, e in vs.items()
            }
            kid = self.provider.primary(create=True)
            suite = get_suite(state.get("suite") or self._suite_choice or Suite.INTL)
            self._save(self._rewrapped(state, plain, kid, suite))
            shred(path)
            self.migration = (
                f"moved the master key out of the home: it is now in "
                f"{self.provider.describe()}; the in-home copy {path} was removed"
            )
            log.warning(self.migration)

    # -- a copied or moved home ---------------------------------------------------------
    def _check_copy(self) -> None:
        """A home copied (or moved) from another path finds the key file of the home it
        came from through the recorded ``home_id``; it takes a copy of it under its own id,
        so that each home's rotations retire masters in its own key file only."""
        if self._copy_checked:
            return
        self._copy_checked = True
        own = self._own_key_file
        if own is None or not isinstance(self.provider, FileProvider):
            return
        own_id, own_path, home = own
        if self.provider.path == own_path:
            return
        with self._locked():
            state = self._read_ring()
            source = self.provider
            if state and state.get("home_id") == own_id:  # another process took the copy
                self.provider = FileProvider(own_path, home)
                return
            if not state or not state.get("home_id") or not source.exists():
                return
            target = FileProvider(own_path, home)
            have = set(target.kids())
            for kid in source.kids():
                if kid not in have:
                    target.add(source.export(kid))
            state["home_id"] = own_id
            self._save(state)
            self.provider = target
            self.migration = (
                f"this home was copied or moved from another path: its master key was copied "
                f"from {source.path} to {target.path} (delete the old file once no home uses it)"
            )
            log.warning(self.migration)
