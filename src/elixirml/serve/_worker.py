"""The worker process of an optimization job: ``python -m elixirml.serve._worker JOB_ID``.

It reads the job from the store named by ``ELIXIRML_STORE``, runs (or resumes) the
optimization and writes its progress and result to the job; it exits with 0 when done and
non-zero when it crashed, so its supervisor restarts it. A mistake no restart can fix (a
``UserError``: no LM configured, a bad option) fails the job at once and exits with 0. It exits
by itself when the process that started it goes away, so an orphaned worker never races the
next manager's.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence


def _exit_with_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=watch, name="elixirml-job-parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one optimization job (the job id and options come from ``argv``); returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m elixirml.serve._worker")
    parser.add_argument("job_id")
    parser.add_argument("--lm", default=None)
    parser.add_argument("--allow-module", action="append", default=[])
    parser.add_argument("--data-dir", action="append", default=[])
    parser.add_argument("--named-lm", action="append", default=[], help="NAME=MODEL, an LM a job may name")
    args = parser.parse_args(argv)
    _exit_with_parent(os.getppid())

    from ..errors import UserError
    from ..program import Store
    from ._jobs import fail_for_good, run_optimization

    store = Store()
    try:
        run_optimization(
            store,
            args.job_id,
            lm=args.lm,
            allow_modules=args.allow_module,
            data_dirs=args.data_dir,
            lms=dict(item.partition("=")[::2] for item in args.named_lm),
        )
    except UserError as exc:  # restarting cannot fix it: the job fails now, with the reason
        fail_for_good(store, args.job_id, exc)
        print(f"error: {exc}", file=sys.stderr)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
