"""The serve image's entry point: gunicorn serving the model store, as before; `serve` alone is
SageMaker's inference contract (its model, port and limits; see serving.py)."""

from __future__ import annotations

import os
import sys
from typing import Sequence

from ..errors import MljobsError
from .privileges import drop_privileges, is_root

SAGEMAKER = ["serve"]
GUNICORN = ["gunicorn", "--config", "/etc/mljobs/gunicorn.conf.py", "mljobs.serve.app:create_app()"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    try:
        if args == SAGEMAKER:
            from .serving import sagemaker_environment

            env, args = sagemaker_environment(env), []
        if is_root():
            drop_privileges()
    except MljobsError as exc:
        print(f"serve failed: {exc}", file=sys.stderr)
        return exc.exit_code
    os.execvpe(GUNICORN[0], [*GUNICORN, *args], env)  # nosec B606: gunicorn, as the image always ran it


if __name__ == "__main__":
    sys.exit(main())
