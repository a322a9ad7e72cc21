"""The body limit in a real `carepath serve`: six 100 MB bodies sent at once, with a declared
length or in chunks, are each answered 413 problem+json and the server's memory stays flat."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from api.tokens import create_token
from models.db import make_engine, upgrade
from tests.api.test_serve import CAREPATH_COMMAND, free_port

BODY_BYTES = 100 * 1024 * 1024
CHUNK = b"x" * 65536


def resident_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def post_huge(port: int, token: str, chunked: bool) -> bytes:
    """POST a 100 MB body, sending only while the server has not answered; the answer."""
    head = (
        "POST /episodes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {BODY_BYTES}\r\n")
        + "\r\n"
    ).encode()
    piece = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
    answer = b""
    pending, sent = head, 0
    deadline = time.monotonic() + 120
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setblocking(False)
        while time.monotonic() < deadline:
            # Sending stops once the server has answered, as an HTTP client's would.
            sending = (bool(pending) or sent < BODY_BYTES) and not answer
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], 1)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
                continue
            if writable:
                if not pending:
                    pending, sent = piece, sent + len(CHUNK)
                try:
                    pending = pending[sock.send(pending) :]
                except (BrokenPipeError, ConnectionResetError):
                    sent = BODY_BYTES  # the server stopped listening: read what it said
                    pending = b""
    return answer


def test_six_parallel_100_mb_bodies_are_refused_without_being_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'carepath.db'}"
    engine = make_engine(url)
    upgrade(engine)
    _, token = create_token(engine, "service", "lab", datetime.now(UTC))
    engine.dispose()
    port = free_port()
    process = subprocess.Popen(
        [str(CAREPATH_COMMAND), "serve", "--port", str(port), "--interval", "60"],
        env={**os.environ, "CAREPATH_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.1)
        before = resident_kib(process.pid, "VmRSS")
        answers: list[bytes] = []
        senders = [
            threading.Thread(target=lambda c=chunked: answers.append(post_huge(port, token, c)))
            for chunked in (False, True) * 3
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(180)
        peak = resident_kib(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert len(answers) == 6
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"content-type: application/problem+json" in head.lower()
        assert json.loads(body)["status"] == 413
    # Six bodies of 100 MB each: at most the 1 MiB limit of each was ever held.
    assert (peak - before) < 64 * 1024, f"resident memory grew {(peak - before) // 1024} MiB"
