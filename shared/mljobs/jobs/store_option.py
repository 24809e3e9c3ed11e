"""The model store a job works on: `--store` (or MLJOBS_STORE, or the config file's `store:`), a
folder or s3://bucket/prefix; else `--models-dir` (default /models). The signing key is read here,
once, at the job's edge, and handed to the store."""

from __future__ import annotations

import argparse

from ..signing import signing_key
from ..store import ModelStore, store_location

STORE_DEFAULT = {"store": None}


def add_store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="the model store: a folder or s3://bucket/prefix (default: MLJOBS_STORE, else --models-dir)")


def job_store(args: argparse.Namespace) -> ModelStore:
    return ModelStore(store_location(args.models_dir, getattr(args, "store", None)), signing_key())
