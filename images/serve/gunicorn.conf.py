"""gunicorn settings for the serve image; every value can be changed through the environment."""

import os
import shutil

from mljobs.cpus import usable_cpus

bind = f"0.0.0.0:{os.environ.get('MLJOBS_PORT', '8080')}"
# Up to 4 workers, no more than the CPUs a limit (--cpus, the stack's) lets the replica use.
workers = int(os.environ.get("MLJOBS_WORKERS", min(4, usable_cpus())))
threads = int(os.environ.get("MLJOBS_THREADS", "1"))
timeout = int(os.environ.get("MLJOBS_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("MLJOBS_GRACEFUL_TIMEOUT", "10"))
keepalive = 5
# Heartbeat files on tmpfs: the root filesystem may be read-only, and /tmp may be disk-backed.
# The container's own tmpfs (bandit B108 does not apply).
worker_tmp_dir = "/dev/shm"  # nosec B108
# No preload: each worker loads the model after the fork (LightGBM's OpenMP does not survive fork).
preload_app = False
accesslog = os.environ.get("MLJOBS_ACCESS_LOG") or None
errorlog = "-"
# No control socket: it would be written under $HOME, which is read-only here, and nothing uses it.
control_socket_disable = True
loglevel = os.environ.get("MLJOBS_LOG_LEVEL", "info").lower()

# Prometheus counts from every worker, summed at /metrics; set before any worker imports the client.
# As above (bandit B108 does not apply).
metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/dev/shm/mljobs-metrics")  # nosec B108


def on_starting(server):
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _whole_response_writes():
    """gunicorn sends a response's headers and its body in two writes. A replica killed between
    them leaves the load balancer holding headers it has already passed on, so it cannot retry.
    Sending a complete small response in one write leaves it either nothing (which it retries
    on another replica) or all of it."""
    from gunicorn import util
    from gunicorn.http import wsgi

    write = wsgi.Response.write

    def write_whole(self, arg):
        whole = (not self.headers_sent and not self.chunked and not self._omits_body
                 and isinstance(arg, bytes) and self.response_length == len(arg))
        if not whole:
            return write(self, arg)
        lines = self.default_headers() + ["%s: %s\r\n" % (k, v) for k, v in self.headers]
        util.write(self.sock, util.to_bytestring("%s\r\n" % "".join(lines), "latin-1") + arg)
        self.headers_sent = True
        self.sent += len(arg)

    wsgi.Response.write = write_whole


_whole_response_writes()
