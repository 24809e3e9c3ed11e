"""gunicorn settings for the serve image; every value can be changed through the environment."""

import multiprocessing
import os

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
