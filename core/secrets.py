"""Function environment variables and secrets, encrypted at rest with a key only the platform can read.

The key is `$CLOUDFN_HOME/secrets.key` (Fernet: AES-128-CBC + HMAC-SHA256), created on first use with mode
0600. The database holds only ciphertext; read routes show variable names, never values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from core.errors import InvalidInput


class SecretBox:
    """Encrypts and decrypts env dicts."""

    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path
        self._fernet: Fernet | None = None

    def _f(self) -> Fernet:
        if self._fernet is None:
            if not self.key_path.exists():
                self.key_path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(Fernet.generate_key())
                except FileExistsError:
                    pass  # another process created it first
            os.chmod(self.key_path, 0o600)
            self._fernet = Fernet(self.key_path.read_bytes().strip())
        return self._fernet

    def seal(self, env: dict[str, str]) -> str | None:
        """Ciphertext of an env dict (None for an empty one)."""
        if not env:
            return None
        return self._f().encrypt(json.dumps(env, sort_keys=True).encode()).decode()

    def open(self, token: str | None) -> dict[str, str]:
        """The env dict of a ciphertext."""
        if not token:
            return {}
        try:
            return dict(json.loads(self._f().decrypt(token.encode())))
        except InvalidToken:
            raise RuntimeError(f"stored secrets cannot be decrypted with {self.key_path} (was the key replaced?)") \
                from None


# Names the platform sets, and names the dynamic loader, glibc or the interpreter act on at start-up.
RESERVED_PREFIXES = ("AWS_LAMBDA_", "RAY_", "CLOUDFN_", "LD_", "PYTHON", "GCONV_", "GLIBC_", "MALLOC_", "LC_",
                     "_HANDLER")
RESERVED_NAMES = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "LANGUAGE", "TZ", "TZDIR", "LOCPATH", "NLSPATH",
                            "HOSTALIASES", "RES_OPTIONS", "LOCALDOMAIN", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
                            "SSL_CERT_FILE", "SSL_CERT_DIR"})


def check_env(env: object) -> dict[str, str]:
    """Validate a user's env dict: string names (identifiers, not reserved) to string values."""
    if not isinstance(env, dict):
        raise InvalidInput("env must be a JSON object of NAME: value strings")
    out: dict[str, str] = {}
    for k, v in env.items():
        if not isinstance(k, str) or not k.isidentifier() or not k.isascii():
            raise InvalidInput(f"env name {k!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
        if k.upper().startswith(RESERVED_PREFIXES) or k.upper() in RESERVED_NAMES:
            raise InvalidInput(f"env name {k!r} is reserved: the platform, the dynamic loader, the C library or "
                               "the interpreter reads it; choose another name")
        if not isinstance(v, str):
            raise InvalidInput(f"env value of {k} must be a string")
        if len(v) > 32_768:
            raise InvalidInput(f"env value of {k} is longer than 32 KiB")
        out[k] = v
    if len(out) > 200:
        raise InvalidInput("at most 200 environment variables per function")
    return out
