"""The serve CLI, run as a real subprocess: answers stream to stdout, errors are one line and exit 2."""

import os
import subprocess
import sys

import onnx_artefacts as art
import pytest

from labhelpers.deploy import serve as serve_cli
from labhelpers.paths import REPO_ROOT


def serve(*args, stdin=""):
    cmd = [sys.executable, "-m", "labhelpers", "serve", "--threads", "1", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)


def expected(base, root, adapter, i):
    """PyTorch's answer, as visible text (see ``onnx_artefacts.visible``)."""
    tok = art.tokenizer(base)
    return art.visible(tok.decode(art.peft_tokens(base, root)[adapter][i], skip_special_tokens=True))


def test_stdin_lines_are_answered_and_use_switches_adapters(base, root):
    model, ads = art.genai_runtime(base, root), art.onnx_adapters(base, root)
    stdin = f"{art.PROMPTS[0]}\n/use B\n{art.PROMPTS[0]}\n\n/use base\n{art.PROMPTS[1]}\n/use A\n{art.PROMPTS[1]}\n"
    res = serve("--model", model, "--adapter", f"A={ads['A']}", "--adapter", f"B={ads['B']}",
                "--max-new-tokens", art.NEW_TOKENS, stdin=stdin)
    assert res.returncode == 0, res.stderr
    want = [expected(base, root, "A", 0), expected(base, root, "B", 0), expected(base, root, None, 1),
            expected(base, root, "A", 1)]
    assert [art.visible(line) for line in res.stdout.split("\n")[:-1]] == want  # the first --adapter is the default
    assert "[using B]" in res.stderr and "[using base]" in res.stderr


def test_argv_prompts_with_use(base, root):
    ads = art.onnx_adapters(base, root)
    res = serve("--model", art.genai_runtime(base, root), "--adapter", f"A={ads['A']}", "--adapter",
                f"B={ads['B']}", "--use", "B", "--max-new-tokens", art.NEW_TOKENS, *art.PROMPTS)
    assert res.returncode == 0, res.stderr
    assert [art.visible(line) for line in res.stdout.splitlines()] == [expected(base, root, "B", 0),
                                                                         expected(base, root, "B", 1)]


def _serve_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """The same CLI entry point in this process (no 8 s interpreter start per case); one case above runs it for
    real, as a subprocess, so the exit code and the streams are checked end to end."""
    code = serve_cli.main(["--threads", "1", *map(str, args)])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, stdout=out.out, stderr=out.err)


@pytest.mark.parametrize("case", ["missing folder", "missing adapter", "foreign adapter", "bad spec", "unknown use"])
def test_errors_exit_2_with_one_line(base, root, tmp_path, capsys, case):
    model = art.genai_runtime(base, root)
    args, needle = {
        "missing folder": (["--model", tmp_path / "nope"], "does not exist"),
        "missing adapter": (["--model", model, "--adapter", f"A={tmp_path / 'a.onnx_adapter'}"], "not found"),
        "foreign adapter": (["--model", model, "--adapter", f"X={art.foreign_onnx_adapter(base, root)}"],
                            "another base"),
        "bad spec": (["--model", model, "--adapter", "just-a-path"], "NAME=PATH"),
        "unknown use": (["--model", model, "--use", "Z"], "no adapter named 'Z'"),
    }[case]
    res = serve(*args, "hello") if case == "missing folder" else _serve_in_process(capsys, *args, "hello")
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
