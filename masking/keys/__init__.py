"""Key custody: the key ring (:mod:`.ring`; purposes and data keys in :mod:`.purposes`,
a home's old layout and moves in :mod:`.homes`), the master key's providers
(:mod:`.providers`, :mod:`.pkcs11`) and backup shares (:mod:`.backup`).

``from masking.keys import KeyRing, DataKey, …`` is the public API.
"""

from masking.keys.providers import (
    MASTER_ENV,
    MASTER_ENV_NEW,
    EnvProvider,
    FileProvider,
    MasterKeyProvider,
    env_master_key,
    provider_from_settings,
)
from masking.keys.purposes import (
    BASE_PURPOSES,
    PSEUDONYM_SCHEME,
    DataKey,
    check_purpose,
    is_pseudonym_purpose,
)
from masking.keys.ring import KeyRing
from masking.keys.store import KEY_BYTES, exclusive_lock

__all__ = [
    "BASE_PURPOSES",
    "KEY_BYTES",
    "MASTER_ENV",
    "MASTER_ENV_NEW",
    "PSEUDONYM_SCHEME",
    "DataKey",
    "EnvProvider",
    "FileProvider",
    "KeyRing",
    "MasterKeyProvider",
    "check_purpose",
    "env_master_key",
    "exclusive_lock",
    "is_pseudonym_purpose",
    "provider_from_settings",
]
