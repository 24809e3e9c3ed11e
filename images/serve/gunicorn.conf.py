"""gunicorn settings for the serve image; every value can be changed through the environment."""

import multiprocessing
import os
import shutil

bind = f"0.0.0.0:{os.environ.get('MLJOBS_PORT', '8080')}"
workers = int(os.environ.get("MLJOBS_WORKERS", min(4, multiprocessing.cpu_count())))
threads = int(os.environ.get("MLJOBS_THREADS", "1"))
timeout = int(os.environ.get("MLJOBS_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("MLJOBS_GRACEFUL_TIMEOUT", "10"))
keepalive = 5
# Heartbeat files on tmpfs: the root filesystem may be read-only, and /tmp may be disk-backed.
worker_tmp_dir = "/dev/shm"
# No preload: each worker loads the model after the fork (LightGBM's OpenMP does not survive fork).
preload_app = False
accesslog = os.environ.get("MLJOBS_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("MLJOBS_LOG_LEVEL", "info").lower()

# Prometheus counts from every worker, summed at /metrics; set before any worker imports the client.
metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/dev/shm/mljobs-metrics")


def on_starting(server):
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
