"""The audit key: made once, kept private, never overwritten; seals and signatures."""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

import pytest

from models.audit_keys import (
    AUDIT_KEY_FILE_ENV,
    AuditKeyError,
    RowSealer,
    generate_key,
    load_key,
    load_public_key,
    process_key,
    process_sealer,
    public_key_path,
)


def test_a_new_key_is_private_to_its_owner_and_its_public_half_lies_beside_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.pem"
    key = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    public = public_key_path(path)
    assert public == tmp_path / "audit.pem.pub"
    assert load_public_key(public).id == key.id == load_key(path).id
    assert len(key.id) == 16


def test_a_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    generate_key(path)
    before = path.read_bytes()
    with pytest.raises(AuditKeyError, match="already exists; refusing to overwrite"):
        generate_key(path)
    assert path.read_bytes() == before
    (tmp_path / "other.pem.pub").write_text("left by someone")
    with pytest.raises(AuditKeyError, match="other.pem.pub: already exists"):
        generate_key(tmp_path / "other.pem")
    assert not (tmp_path / "other.pem").exists()


def test_a_key_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    generate_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(AuditKeyError, match=r"others may read it \(mode 0644\): chmod 600 it"):
        load_key(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"not a key", "not a PEM private key"), (None, "No such file")],
)
def test_a_file_that_is_not_a_key_is_named(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "audit.pem"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)
    with pytest.raises(AuditKeyError, match=reason) as raised:
        load_key(path)
    assert raised.value.path == str(path)


def test_signatures_check_with_the_public_key_only(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "audit.pem")
    public = load_public_key(tmp_path / "audit.pem.pub")
    signature = key.sign(b"row 41")
    assert public.verify(signature, b"row 41")
    assert not public.verify(signature, b"row 42")
    assert not public.verify(b"\0" * 64, b"row 41")


def test_the_seal_is_hmac_sha256_under_a_key_of_each_log(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "audit.pem")
    audit, access = key.sealer("audit_log"), key.sealer("access_log")
    row_hash = "4824222657aba96412c72cbf7c1aa6e2d9aabf9c2b0b8b195c87c21f97a98fbb"
    assert isinstance(audit, RowSealer)
    assert audit(row_hash) == hmac.digest(audit.secret, row_hash.encode(), "sha256").hex()
    assert audit(row_hash) != access(row_hash)
    assert generate_key(tmp_path / "other.pem").sealer("audit_log")(row_hash) != audit(row_hash)


def test_the_process_key_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUDIT_KEY_FILE_ENV, raising=False)
    assert process_key() is None
    assert process_sealer("audit_log") is None
    key = generate_key(tmp_path / "audit.pem")
    monkeypatch.setenv(AUDIT_KEY_FILE_ENV, str(tmp_path / "audit.pem"))
    found = process_key()
    assert found is not None
    assert found.id == key.id
    monkeypatch.setenv(AUDIT_KEY_FILE_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(AuditKeyError, match="missing.pem"):
        process_sealer("audit_log")
