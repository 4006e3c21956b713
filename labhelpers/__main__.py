"""Command line: ``python -m labhelpers finetune --config run.yaml [--resume]``."""

from __future__ import annotations

import argparse
import sys

from .errors import LabError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labhelpers", description="slm-finetune-lab helpers")
    sub = ap.add_subparsers(dest="command", required=True)
    ft = sub.add_parser("finetune", help="run a YAML run config end to end (LoRA)")
    ft.add_argument("--config", required=True, help="the YAML run config (see configs/qa_lora.yaml)")
    ft.add_argument("--resume", action="store_true",
                    help="continue the last checkpoint in the config's output_dir instead of refusing it")
    args = ap.parse_args(argv)
    if args.command == "finetune":
        from .finetune import run

        try:
            result = run(args.config, resume=args.resume)
        except LabError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        # Under accelerate every process prints its folder to the same pipe: flush what is buffered
        # first, then write the line in one call, so two processes' lines cannot interleave mid-line
        # (a pipe write under PIPE_BUF bytes is atomic; print() writes text and newline separately).
        sys.stdout.flush()
        sys.stdout.write(f"{result.run_dir}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
