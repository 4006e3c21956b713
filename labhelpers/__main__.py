"""Command line: ``python -m labhelpers <command> [options]`` (``--help`` on each command).

    finetune   run a YAML run config end to end (LoRA)        --config run.yaml [--resume]
    course     run every notebook in order into one run folder
    batch      run notebooks over a parameter grid (resumable) --grid grid.yaml
    serve      answer prompts with an ONNX Runtime GenAI folder
    preflight  is this laptop ready for the course?
"""

from __future__ import annotations

import argparse
import importlib
import sys

from labhelpers.errors import LabError

#: command -> the module whose ``main(argv)`` runs it. Imported only when chosen, so ``preflight`` starts
#: without torch and can report a broken install.
COMMANDS = {
    "course": "labhelpers.course.runner",
    "batch": "labhelpers.course.batch",
    "serve": "labhelpers.deploy.serve",
    "preflight": "labhelpers.course.preflight",
}


def finetune(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m labhelpers finetune",
                                 description="run a YAML run config end to end (LoRA)")
    ap.add_argument("--config", required=True, help="the YAML run config (see configs/qa_lora.yaml)")
    ap.add_argument("--resume", action="store_true",
                    help="continue the last checkpoint in the config's output_dir instead of refusing it")
    args = ap.parse_args(argv)
    ft = importlib.import_module("labhelpers.train.finetune")  # torch loads only for this command
    try:
        result = ft.run(args.config, resume=args.resume)
    except LabError as err:  # every process raises the same error (the main one broadcasts it)
        print(f"error: {err}", file=sys.stderr)
        ft.leave_process_group()
        return 2
    ft.leave_process_group()
    # Under accelerate every process prints its folder to the same pipe: flush what is buffered
    # first, then write the line in one call, so two processes' lines cannot interleave mid-line
    # (a pipe write under PIPE_BUF bytes is atomic; print() writes text and newline separately).
    sys.stdout.flush()
    sys.stdout.write(f"{result.run_dir}\n")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "finetune":
        return finetune(rest)
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; choose one of finetune, {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
