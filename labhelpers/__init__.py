"""Helpers for the slm-finetune-lab notebooks, in rooms named for the course's stages.

Room map (imports point down this list, never up; ``tests/`` mirrors it):

- shared (this folder): ``errors`` (LabError family), ``checks`` (argument checks, "did you mean"),
  ``constants`` (GiB, method names), ``paths``, ``yamlfile``, ``runs`` (run folders, metrics.json),
  ``catalog`` (the notebook list). Every notebook.
- ``models``: presets and their real shapes, the embedded tiny Llama and its corpus. 00, 01, 03, 07, 08.
- ``data``: loading and validation, templates and chat formats (``chat``: conversations, generation markers),
  YAML run configs, generated datasets. 02, 04, 07.
- ``memory``: hardware facts, the memory estimate, fitcheck, measuring peak memory and time. 00, 01, 03, 07.
- ``evaluate``: metrics, text metrics, perplexity, batched generation, comparison, plots, diagnose. 02-09.
- ``train``: notebook settings, the training CLI (``finetune``, on TRL's SFTTrainer), methods, quantization,
  losses, search, monitoring, the tone task. 01-09.
- ``deploy``: ONNX export, ONNX Runtime (GenAI) inference, the serve CLI, Olive's CLI. 06, 09.
- ``course``: the course runner, papermill grids, preflight, exercises, widgets. 00, 01, 04, 08 and ``make``.

Imports sit at the top of each module. The only exceptions are optional or heavy packages (bitsandbytes,
onnxruntime_genai, optuna, ipywidgets, IPython), imported inside the function that needs them so that
importing labhelpers never needs them and a missing one fails with that helper's own fix; and
``course.preflight``, which must start on the standard library to report a broken install.

Command line: ``python -m labhelpers finetune|course|batch|serve|preflight ...`` (``--help`` on each).
"""
