"""Authentication and pinning as the CLI does them: over TLS the client trusts exactly the
pinned certificate, and a peer with another one is refused inside the handshake, before any
request (and so the token) is written; with no arguments the client finds the pool the CLI
would, a local `crowdcloud up` or a pool joined with `crowdcloud join`."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from pathlib import Path
from typing import List

import pytest

import crowdcloud

from conftest import eventually

WRONG = "sha256:" + "07" * 32


class Recorder:
    """A TLS server holding the coordinator's own certificate and key, which writes down every
    byte a client sends it after the handshake and answers one health request per
    connection: what an impersonator who stole nothing but the address would see."""

    def __init__(self, tls_dir: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.received: List[bytes] = []
        self.connections_ended = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except socket.timeout:
                continue
            connection.settimeout(5)
            try:
                self._one(connection)
            except (OSError, ssl.SSLError):
                pass
            finally:
                connection.close()
                self.connections_ended += 1

    def _one(self, connection: socket.socket) -> None:
        with self.context.wrap_socket(connection, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                request += chunk
            self.received.append(request)
            if request:
                body = b'{"service":"crowdcloud","version":"0","pool_name":"recorded","time_ms":0}'
                tls.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.listener.close()


@pytest.fixture
def recorder(tls_coordinator) -> Recorder:
    started = Recorder(tls_coordinator.data_dir / "tls")
    yield started
    started.stop()


def test_the_pinned_certificate_is_trusted_and_another_is_refused_saying_what_to_do(
    tls_coordinator,
) -> None:
    with tls_coordinator.client() as right:
        assert right.health()["pool_name"] == "family"
        assert right.jobs() == []
    with crowdcloud.Client(
        tls_coordinator.url, token=tls_coordinator.owner_token, fingerprint=WRONG
    ) as impostor:
        with pytest.raises(crowdcloud.WrongCertificateError) as refused:
            impostor.jobs()
    assert refused.value.pinned == WRONG
    assert refused.value.presented == tls_coordinator.fingerprint
    assert refused.value.code is None
    message = str(refused.value)
    assert "impersonating" in message and "crowdcloud join" in message


def test_a_peer_with_another_certificate_never_receives_the_token(
    tls_coordinator, recorder: Recorder
) -> None:
    token = tls_coordinator.owner_token
    with crowdcloud.Client(recorder.url, token=token, fingerprint=WRONG) as pinned_elsewhere:
        with pytest.raises(crowdcloud.WrongCertificateError):
            pinned_elsewhere.health()
    eventually("the refused connection to end", 10, lambda: recorder.connections_ended >= 1)
    assert b"".join(recorder.received) == b"", "not a byte of a request reached the peer"

    async def refused_async() -> None:
        async with crowdcloud.AsyncClient(recorder.url, token=token, fingerprint=WRONG) as client:
            with pytest.raises(crowdcloud.WrongCertificateError):
                await client.health()

    asyncio.run(refused_async())
    eventually("the async refusal to end", 10, lambda: recorder.connections_ended >= 2)
    assert b"".join(recorder.received) == b""

    # The same peer pinned rightly gets the request, token and all: the recorder would have
    # seen it.
    with crowdcloud.Client(
        recorder.url, token=token, fingerprint=tls_coordinator.fingerprint
    ) as pinned_right:
        assert pinned_right.health()["pool_name"] == "recorded"
    assert f"authorization: bearer {token}".encode() in b"".join(recorder.received).lower()


def test_https_without_a_fingerprint_is_refused_before_connecting(tls_coordinator) -> None:
    with pytest.raises(crowdcloud.ConnectionSettingsError, match="fingerprint="):
        crowdcloud.Client(tls_coordinator.url, token=tls_coordinator.owner_token)
    with pytest.raises(crowdcloud.UsageError, match="not a certificate fingerprint"):
        crowdcloud.Client(
            tls_coordinator.url, token=tls_coordinator.owner_token, fingerprint="sha256:beef"
        )


def test_with_no_arguments_the_client_finds_the_local_up_as_the_cli_does(
    tls_coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROWDCLOUD_DATA_DIR", str(tls_coordinator.data_dir))
    with crowdcloud.Client() as local:
        assert local.connection.url == tls_coordinator.url
        assert local.connection.fingerprint == tls_coordinator.fingerprint
        assert local.health()["pool_name"] == "family"
        assert tls_coordinator.owner_token not in repr(local.connection), "the token stays secret"


def test_a_machine_that_joined_with_the_cli_is_reached_with_no_arguments(
    tls_coordinator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = tls_coordinator.cli(["join-code", "--requests", "--json"], tls_coordinator.data_dir)
    assert issued.returncode == 0, issued.stderr.decode()
    code = json.loads(issued.stdout)["code"]
    device = tmp_path / "laptop"
    joined = tls_coordinator.cli(
        ["join", "--coordinator", tls_coordinator.url, "--code", code, "--name", "laptop"],
        device,
    )
    assert joined.returncode == 0, joined.stderr.decode()

    monkeypatch.setenv("CROWDCLOUD_DATA_DIR", str(device))
    with crowdcloud.Client() as remembered:
        assert remembered.connection.fingerprint == tls_coordinator.fingerprint
        assert remembered.connection.token != tls_coordinator.owner_token, "its own token"
        assert remembered.jobs() == []


def test_a_machine_that_knows_no_pool_says_how_to_find_one(tmp_path: Path) -> None:
    with pytest.raises(crowdcloud.ConnectionSettingsError) as nowhere:
        crowdcloud.Client(data_dir=tmp_path)
    assert "crowdcloud join" in str(nowhere.value) and "crowdcloud up" in str(nowhere.value)
