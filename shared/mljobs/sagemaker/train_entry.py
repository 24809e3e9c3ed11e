"""The train image's entry point: `train` alone is SageMaker's training contract; anything else
is the train job's command line, as before (`python -m mljobs.jobs.train`)."""

from __future__ import annotations

import sys
from typing import Sequence

from ..errors import UsageError
from .privileges import drop_privileges, is_root

SAGEMAKER = ["train"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == SAGEMAKER:
        from .training import train

        return train()
    if is_root():
        try:
            drop_privileges()
        except UsageError as exc:
            print(f"train failed: {exc}", file=sys.stderr)
            return exc.exit_code
    from ..jobs import train as train_job

    return train_job.main(args)


if __name__ == "__main__":
    sys.exit(main())
