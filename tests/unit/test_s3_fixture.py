"""The S3 test server itself (tests/s3.py): several run side by side (other sessions, other
modules), and the relay that lets containers reach one passes bytes and shows requests."""

from __future__ import annotations

import shutil

from tests import s3

s3_server = s3.s3_server  # the session's server, for this module


def test_a_second_server_starts_beside_a_running_one_and_comes_back_after_a_kill(s3_server):
    """weed opens side ports of its own unless told not to (the Lance one on a fixed 9101): a
    second server would die at start."""
    second = s3.start_server()
    try:
        for server in (s3_server, second):
            server.client().create_dir("side-by-side")  # type: ignore[attr-defined]
        second.kill()
        second.start()
        with second.client().open_output_stream("side-by-side/after-restart") as out:  # type: ignore[attr-defined]
            out.write(b"ok")
    finally:
        second.kill()
        shutil.rmtree(second.folder, ignore_errors=True)


def test_the_relay_passes_requests_through_and_shows_their_lines(s3_server):
    relay = s3.Relay("127.0.0.1", s3_server.port)
    seen: list[tuple[str, str]] = []
    relay.watch = lambda method, path: seen.append((method, path))
    try:
        from pyarrow.fs import S3FileSystem

        fs = S3FileSystem(access_key=s3.ACCESS_KEY, secret_key=s3.SECRET_KEY, region=s3.REGION,
                          endpoint_override=relay.endpoint, scheme="http", allow_bucket_creation=True)
        fs.create_dir("relayed")
        with fs.open_output_stream("relayed/a b.txt") as out:
            out.write(b"x" * 100_000)
        with fs.open_input_stream("relayed/a b.txt") as f:
            assert f.read() == b"x" * 100_000
    finally:
        relay.close()
    assert ("PUT", "/relayed/a b.txt") in seen
