"""Job settings: command-line flags win over a YAML config file, which wins over MLJOBS_* variables.

Parsers declare their defaults with `set_defaults`-free arguments (default None), and
`resolve` fills what the user did not give, so the precedence lives in one place.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import UsageError

ENV_PREFIX = "MLJOBS_"


def load_yaml(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resolve(
    args: argparse.Namespace,
    defaults: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """Fill every setting left as None from the config file, then the environment, then defaults."""
    environ = os.environ if environ is None else environ
    from_file = load_yaml(args.config) if getattr(args, "config", None) else {}
    unknown = sorted(set(from_file) - set(vars(args)))
    if unknown:
        raise UsageError(f"unknown setting '{unknown[0]}' in config file {args.config}")
    for key, default in defaults.items():
        if getattr(args, key, None) is not None:
            continue
        if key in from_file:
            value = from_file[key]
        elif ENV_PREFIX + key.upper() in environ:
            value = environ[ENV_PREFIX + key.upper()]
        else:
            value = default
        setattr(args, key, _coerce(key, value, default))
    return args


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Environment values are text: convert them to the type of the default."""
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, list):
            return [v.strip() for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise UsageError(f"setting {key}={value!r} is not a {type(default).__name__}") from exc
    return value
