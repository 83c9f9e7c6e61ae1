"""The vault keyring: key-encryption keys (KEKs) and the card fingerprint key.

Envelope encryption (see :mod:`palmpay.payments.vault`): every stored card and palm template is
encrypted under its own random data key (DEK); the DEK is stored wrapped by a KEK from this
keyring, with the KEK's id beside it. Exactly one KEK is *active* (wraps new records); older ones
stay in the keyring so records wrapped by them still open, until
:func:`palmpay.payments.vault.rewrap_all` has moved every record to the active KEK and the old
KEK is retired (:func:`remove_kek`, refused while a record still uses it — see
:func:`palmpay.payments.admin.retire_key`). The fingerprint key (HMAC-SHA256) makes the
duplicate-card fingerprint useless without the key; it is not rotated (rotating it would need
every PAN re-fingerprinted). The *template keys* (one active, created with the keyring) derive
the cancelable transform of palm templates (:mod:`palmpay.payments.cancelable`); renewed by
:func:`rotate_template_key` + ``palmpay keys renew-templates``, retired when unused.

Where the keyring comes from (:func:`load_keyring`), first match wins:

1. ``PALMPAY_KEYRING``: the JSON itself (e.g. injected from a secret manager); cannot be rotated
   in place.
2. ``PALMPAY_KEYRING_FILE``: a JSON file, mode 0600 (or 0400), owned by the service account.
   A file that group or others may read or write is refused (:class:`KeyringError`): the keys
   would be as exposed as the data they protect. (A Kubernetes secret volume needs
   ``defaultMode: 0400``.)
3. ``PALMPAY_DEV_MODE=true``: ``<PALMPAY_DATA_DIR>/keyring.json``, created (0600) with fresh
   random keys if missing, with a warning, in a data folder created 0700. Development and
   ``make demo`` only: the keys sit beside the database they protect. (In dev mode a missing
   ``PALMPAY_KEYRING_FILE`` is created the same way.)

Otherwise :func:`load_keyring` raises :class:`KeyringError` naming these variables. There is no
default key in the code.

File format (version 1)::

    {"version": 1, "active_kek": "kek_...",
     "keks": [{"id": "kek_...", "key": "<base64 32 bytes>", "created_at": "<ISO 8601>"}],
     "fingerprint_key": "<base64 32 bytes>",
     "active_template_key": "tfk_...",
     "template_keys": [{"id": "tfk_...", "key": "<base64 32 bytes>", "created_at": "..."}]}

The template members are optional (older keyrings: templates stored untransformed until
``palmpay keys renew-templates`` adds a key).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from palmpay.config import Settings

__all__ = [
    "Keyring",
    "KeyringError",
    "UnknownKekError",
    "KEY_BYTES",
    "generate_keyring",
    "load_keyring",
    "keyring_path",
    "read_keyring_file",
    "write_keyring_file",
    "rotate",
    "remove_kek",
    "rotate_template_key",
    "remove_template_key",
]

log = logging.getLogger(__name__)

#: Every key is 256 bits.
KEY_BYTES = 32
_FORMAT_VERSION = 1
_ENV_HELP = (
    "set PALMPAY_KEYRING_FILE (path of a keyring JSON file) or PALMPAY_KEYRING (the JSON "
    "itself); for local development only, PALMPAY_DEV_MODE=true creates "
    "<PALMPAY_DATA_DIR>/keyring.json"
)


class KeyringError(RuntimeError):
    """The keyring is missing, unreadable or malformed, or an operation on it is refused."""


class UnknownKekError(KeyringError):
    """A record is wrapped by a KEK this keyring does not hold."""

    def __init__(self, kek_id: str) -> None:
        super().__init__(f"KEK {kek_id!r} is not in the keyring")
        self.kek_id = kek_id


def _new_kek_id(prefix: str = "kek") -> str:
    return f"{prefix}_{datetime.now(UTC):%Y%m%dT%H%M%SZ}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Keyring:
    """KEKs by id (one active), the fingerprint key and the template keys by id (one active, or
    none in a keyring written before them). ``repr`` never shows key material."""

    keks: Mapping[str, bytes] = field(repr=False)
    active_kek_id: str
    fingerprint_key: bytes = field(repr=False)
    created_at: Mapping[str, str] = field(default_factory=dict, repr=False)
    template_keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    active_template_key_id: str | None = None

    def __post_init__(self) -> None:
        if (self.active_template_key_id is None) != (not self.template_keys) or (
                self.active_template_key_id is not None
                and self.active_template_key_id not in self.template_keys):
            raise KeyringError("the active template key is not in the keyring")
        for key_id, key in self.template_keys.items():
            if len(key) != KEY_BYTES:
                raise KeyringError(f"template key {key_id!r} is not {KEY_BYTES} bytes")
        object.__setattr__(self, "template_keys", MappingProxyType(dict(self.template_keys)))
        if self.active_kek_id not in self.keks:
            raise KeyringError(f"active KEK {self.active_kek_id!r} is not in the keyring")
        for kek_id, key in self.keks.items():
            if len(key) != KEY_BYTES:
                raise KeyringError(f"KEK {kek_id!r} is {len(key)} bytes, not {KEY_BYTES}")
        if len(self.fingerprint_key) != KEY_BYTES:
            raise KeyringError(f"the fingerprint key is not {KEY_BYTES} bytes")
        object.__setattr__(self, "keks", MappingProxyType(dict(self.keks)))
        object.__setattr__(self, "created_at", MappingProxyType(dict(self.created_at)))

    def __repr__(self) -> str:
        return f"Keyring(active_kek_id={self.active_kek_id!r}, kek_ids={sorted(self.keks)!r})"

    @property
    def active_kek(self) -> bytes:
        return self.keks[self.active_kek_id]

    def kek(self, kek_id: str) -> bytes:
        """The KEK with this id; :class:`UnknownKekError` if absent."""
        try:
            return self.keks[kek_id]
        except KeyError:
            raise UnknownKekError(kek_id) from None

    def with_new_kek(self) -> Keyring:
        """A copy with a fresh random KEK added and made active (old KEKs kept)."""
        kek_id = _new_kek_id()
        while kek_id in self.keks:
            kek_id = _new_kek_id()
        keks = dict(self.keks)
        keks[kek_id] = secrets.token_bytes(KEY_BYTES)
        created = dict(self.created_at)
        created[kek_id] = datetime.now(UTC).isoformat()
        return Keyring(keks, kek_id, self.fingerprint_key, created, self.template_keys,
                       self.active_template_key_id)

    def with_new_template_key(self) -> Keyring:
        """A copy with a fresh random template key added and made active (old ones kept)."""
        key_id = _new_kek_id("tfk")
        while key_id in self.template_keys:
            key_id = _new_kek_id("tfk")
        keys = dict(self.template_keys)
        keys[key_id] = secrets.token_bytes(KEY_BYTES)
        created = dict(self.created_at)
        created[key_id] = datetime.now(UTC).isoformat()
        return Keyring(self.keks, self.active_kek_id, self.fingerprint_key, created, keys, key_id)

    def without_template_key(self, key_id: str) -> Keyring:
        """A copy without template key ``key_id``; the active one cannot be removed."""
        if key_id == self.active_template_key_id:
            raise KeyringError(f"template key {key_id!r} is active and cannot be removed")
        if key_id not in self.template_keys:
            raise KeyringError(f"template key {key_id!r} is not in the keyring")
        keys = {k: v for k, v in self.template_keys.items() if k != key_id}
        created = {k: v for k, v in self.created_at.items() if k != key_id}
        return Keyring(self.keks, self.active_kek_id, self.fingerprint_key, created, keys,
                       self.active_template_key_id)

    def without_kek(self, kek_id: str) -> Keyring:
        """A copy without ``kek_id``; the active KEK cannot be removed."""
        if kek_id == self.active_kek_id:
            raise KeyringError(f"KEK {kek_id!r} is active and cannot be removed")
        if kek_id not in self.keks:
            raise UnknownKekError(kek_id)
        keks = {k: v for k, v in self.keks.items() if k != kek_id}
        created = {k: v for k, v in self.created_at.items() if k != kek_id}
        return Keyring(keks, self.active_kek_id, self.fingerprint_key, created,
                       self.template_keys, self.active_template_key_id)

    def to_json(self) -> str:
        """The keyring file's JSON (contains the keys: write it only to a 0600 file)."""
        b64 = base64.b64encode
        doc: dict = {
            "version": _FORMAT_VERSION,
            "active_kek": self.active_kek_id,
            "keks": [
                {"id": k, "key": b64(v).decode(), "created_at": self.created_at.get(k)}
                for k, v in self.keks.items()
            ],
            "fingerprint_key": b64(self.fingerprint_key).decode(),
        }
        if self.active_template_key_id is not None:
            doc["active_template_key"] = self.active_template_key_id
            doc["template_keys"] = [
                {"id": k, "key": b64(v).decode(), "created_at": self.created_at.get(k)}
                for k, v in self.template_keys.items()
            ]
        return json.dumps(doc, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "keyring") -> Keyring:
        """Parse the keyring JSON; :class:`KeyringError` (naming ``source``, never quoting key
        material) if it is malformed."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyringError(f"{source} is not valid JSON (line {exc.lineno})") from None
        if not isinstance(doc, dict) or doc.get("version") != _FORMAT_VERSION:
            raise KeyringError(f"{source}: expected a JSON object with \"version\": 1")
        try:
            keks = {}
            created = {}
            for entry in doc["keks"]:
                keks[str(entry["id"])] = base64.b64decode(entry["key"], validate=True)
                if entry.get("created_at"):
                    created[str(entry["id"])] = str(entry["created_at"])
            fingerprint_key = base64.b64decode(doc["fingerprint_key"], validate=True)
            active = str(doc["active_kek"])
            template_keys = {}
            for entry in doc.get("template_keys") or []:
                template_keys[str(entry["id"])] = base64.b64decode(entry["key"], validate=True)
                if entry.get("created_at"):
                    created[str(entry["id"])] = str(entry["created_at"])
            active_template = doc.get("active_template_key")
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyringError(f"{source}: malformed keyring ({type(exc).__name__})") from None
        return cls(keks, active, fingerprint_key, created, template_keys,
                   None if active_template is None else str(active_template))


def generate_keyring() -> Keyring:
    """A new keyring: one random KEK (active), a random fingerprint key and one random
    template key (active)."""
    kek_id = _new_kek_id()
    return Keyring(
        {kek_id: secrets.token_bytes(KEY_BYTES)},
        kek_id,
        secrets.token_bytes(KEY_BYTES),
        {kek_id: datetime.now(UTC).isoformat()},
    ).with_new_template_key()


def read_keyring_file(path: str | Path) -> Keyring:
    """Load a keyring file; :class:`KeyringError` when it is missing, unreadable, malformed, or
    readable or writable by group or others (checked before it is read)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & 0o077:
            raise KeyringError(
                f"keyring file {path} is readable or writable by group or others (mode "
                f"{mode & 0o777:o}): refusing to use it; run chmod 600 {path}")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyringError(f"cannot read keyring file {path}: {exc.strerror}") from None
    return Keyring.from_json(text, source=str(path))


def _private_dir(folder: Path) -> None:
    """Create ``folder`` (and its parents) if missing, the folder itself 0700."""
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def write_keyring_file(path: str | Path, keyring: Keyring) -> None:
    """Write atomically: a 0600 temp file in the same folder, fsync, rename over ``path``."""
    path = Path(path)
    _private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(keyring.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` (serialises concurrent rotations)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    _private_dir(path.parent)
    lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(lock_fd, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def keyring_path(settings: Settings) -> Path | None:
    """The keyring file the settings point at (None when the keyring is given inline)."""
    if settings.keyring is not None:
        return None
    if settings.keyring_file is not None:
        return Path(settings.keyring_file)
    if settings.dev_mode:
        return Path(settings.data_dir) / "keyring.json"
    return None


def load_keyring(settings: Settings) -> Keyring:
    """The keyring from the settings (see the module docstring for the order)."""
    if settings.keyring is not None:
        return Keyring.from_json(settings.keyring.get_secret_value(), source="PALMPAY_KEYRING")
    path = keyring_path(settings)
    if path is None:
        raise KeyringError(f"no card-vault keyring configured: {_ENV_HELP}")
    if not path.exists():
        if not settings.dev_mode:
            raise KeyringError(f"keyring file {path} does not exist ({_ENV_HELP})")
        with _locked(path):
            if not path.exists():
                write_keyring_file(path, generate_keyring())
                log.warning(
                    "DEV MODE: created a new card-vault keyring at %s. Never use dev mode in "
                    "production: set PALMPAY_KEYRING_FILE to a keyring kept apart from the data.",
                    path,
                )
    elif settings.dev_mode:
        log.warning("DEV MODE is on (PALMPAY_DEV_MODE=true); keyring %s", path)
    return read_keyring_file(path)


def rotate(keyring_path: str | Path) -> str:
    """Add a fresh KEK to the keyring file and make it active; returns its id.

    Old KEKs stay, so every existing record still opens (and running servers, which reload the
    file when they meet an unknown KEK id, keep working). Follow with
    :func:`palmpay.payments.vault.rewrap_all` to move records to the new KEK.
    """
    path = Path(keyring_path)
    with _locked(path):
        keyring = read_keyring_file(path).with_new_kek()
        write_keyring_file(path, keyring)
    log.info("keyring %s: new active KEK %s", path, keyring.active_kek_id)
    return keyring.active_kek_id


def remove_kek(keyring_path: str | Path, kek_id: str) -> None:
    """Remove a non-active KEK from the keyring file. Records still wrapped by it become
    unreadable: use :func:`palmpay.payments.admin.retire_key`, which checks the database first.
    """
    path = Path(keyring_path)
    with _locked(path):
        write_keyring_file(path, read_keyring_file(path).without_kek(kek_id))
    log.info("keyring %s: removed KEK %s", path, kek_id)


def rotate_template_key(keyring_path: str | Path) -> str:
    """Add a fresh active template key to the keyring file; returns its id (then
    :func:`palmpay.payments.renewal.renew_all`: ``palmpay keys renew-templates`` does both)."""
    path = Path(keyring_path)
    with _locked(path):
        keyring = read_keyring_file(path).with_new_template_key()
        write_keyring_file(path, keyring)
    log.info("keyring %s: new active template key %s", path, keyring.active_template_key_id)
    return str(keyring.active_template_key_id)


def remove_template_key(keyring_path: str | Path, key_id: str) -> None:
    """Remove a non-active template key (``admin.retire_key`` checks no template uses it)."""
    path = Path(keyring_path)
    with _locked(path):
        write_keyring_file(path, read_keyring_file(path).without_template_key(key_id))
    log.info("keyring %s: removed template key %s", path, key_id)
