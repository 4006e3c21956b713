"""Answer prompts with an ORT GenAI folder, streaming tokens to stdout; LoRA adapters switch without a reload.

    python -m labhelpers serve --model runs/genai --adapter tone=tone.onnx_adapter --use tone "I won!"
    python -m labhelpers serve --model runs/genai --adapter a=a.onnx_adapter --adapter b=b.onnx_adapter < prompts.txt

With no prompt arguments it reads one prompt per line from stdin; a line ``/use NAME`` switches to
another loaded adapter (``/use base`` back to the base model). Prompts go through the chat template
saved in the folder. Errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys

from labhelpers.deploy.onnx_infer import GenAIModel
from labhelpers.errors import ConfigError, LabError

BASE = "base"


def _parse_adapter(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--adapter {spec!r}: write it as NAME=PATH, e.g. tone=runs/tone.onnx_adapter")
    if name == BASE:
        raise ConfigError(f"--adapter {spec!r}: the name {BASE!r} means the base model; pick another name")
    return name, path


def answer(model, prompt: str, adapter: str | None, max_new_tokens: int, out=sys.stdout) -> None:
    """Stream one answer to ``out`` (first piece without its leading space), then a newline."""
    first = True
    for piece in model.stream(model.chat_prompt(prompt), max_new_tokens, adapter):
        if first:
            piece, first = piece.lstrip(), not piece.strip()
        out.write(piece)
        out.flush()  # show each token as it arrives
    out.write("\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labhelpers serve", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="an ORT GenAI folder (labhelpers.deploy.export.build_genai)")
    ap.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                    help="load an .onnx_adapter file under NAME (repeatable)")
    ap.add_argument("--use", default=None, metavar="NAME",
                    help=f"adapter to answer with (default: the first --adapter; '{BASE}' for the base model)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: one per core)")
    ap.add_argument("prompt", nargs="*", help="prompts to answer; none: read them from stdin, one per line")
    args = ap.parse_args(argv)
    try:
        if args.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens {args.max_new_tokens} must be at least 1")
        specs = [_parse_adapter(s) for s in args.adapter]

        model = GenAIModel(args.model, threads=args.threads)
        for name, path in specs:
            model.load_adapter(path, name)
        use = args.use if args.use is not None else (specs[0][0] if specs else BASE)
        active = None if use == BASE else use
        if active is not None:
            model.check_adapter(active)
        if args.prompt:
            for prompt in args.prompt:
                answer(model, prompt, active, args.max_new_tokens)
            return 0
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            if line.startswith("/use"):
                name = line[len("/use"):].strip() or BASE
                if name != BASE and name not in model.adapters:
                    # A typo in an interactive session should not end it: say so and keep the adapter.
                    print(f"error: no adapter named {name!r} (loaded: {sorted(model.adapters) or 'none'})",
                          file=sys.stderr, flush=True)
                    continue
                active = None if name == BASE else name
                print(f"[using {name}]", file=sys.stderr, flush=True)
                continue
            answer(model, line, active, args.max_new_tokens)
    except LabError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)  # one line, even for multi-line messages
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
