"""Hyperparameter search from a small YAML space, run with optuna.

The chapter's Olive example searches learning rate, LoRA rank and batch size with a "random"
strategy. The YAML here is the course's OWN format, NOT Olive's (Olive describes search spaces
differently, per pass); it only keeps the same idea, one distribution per parameter::

    metric: {name: accuracy, direction: maximize}
    sampler: random            # random | tpe
    n_trials: 6
    seed: 0
    pruner: median             # none | median, or {type: median, n_startup_trials: 2, n_warmup_steps: 0}
    parameters:
      learning_rate: {type: float, low: 1.0e-6, high: 1.0e-3, log: true}
      lora_r: {type: int, low: 8, high: 64, log: true}
      batch_size: {type: categorical, choices: [8, 16, 32]}
    fixed: {max_steps: 40, lora_alpha_ratio: 2}

``load_space`` checks it key by key (errors name the file, the key and the fix), ``run_search`` runs
it, ``lora_tone_objective`` is the course's real objective (a short LoRA run on the tone task) and
``plot_search`` draws the metric against each parameter.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import NullFormatter, ScalarFormatter
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback

from labhelpers.checks import did_you_mean
from labhelpers.data.templates import chat_texts
from labhelpers.errors import ConfigError
from labhelpers.evaluate.generation import generate_answers
from labhelpers.evaluate.metrics import classification_scores, parse_label
from labhelpers.memory.hardware import mixed_precision_env
from labhelpers.paths import BASE_MODEL_DIR
from labhelpers.train.tonetask import ToneTask
from labhelpers.yamlfile import read_yaml

SAMPLERS = ("random", "tpe")
DIRECTIONS = ("maximize", "minimize")
PRUNERS = ("none", "median")
PARAM_TYPES = ("float", "int", "categorical")
TOP_KEYS = ("metric", "sampler", "n_trials", "seed", "pruner", "parameters", "fixed")
PARAM_KEYS = {"float": ("type", "low", "high", "log"), "int": ("type", "low", "high", "log"),
              "categorical": ("type", "choices")}
PRUNER_KEYS = ("type", "n_startup_trials", "n_warmup_steps")
STATES = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class Param:
    """One searched parameter: a float/int range (optionally log-scaled) or a list of choices."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: list | None = None

    def suggest(self, trial):
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.name, self.choices)


@dataclass
class SearchSpace:
    """A checked search space (see the module docstring for the YAML)."""

    parameters: dict[str, Param]
    metric: str = "value"
    direction: str = "maximize"
    sampler: str = "random"
    n_trials: int = 10
    seed: int = 0
    pruner: str = "none"
    # Two finished trials are enough for a median on a short course run; optuna's default waits for 5.
    pruner_options: dict = field(default_factory=lambda: {"n_startup_trials": 2, "n_warmup_steps": 0})
    fixed: dict = field(default_factory=dict)
    source: str = "search space"

    def suggest(self, trial) -> dict:
        """The trial's values for every searched parameter."""
        return {name: p.suggest(trial) for name, p in self.parameters.items()}


@dataclass
class SearchResult:
    """``table`` (one row per trial), ``best_params``, ``best_value`` and the optuna ``study``."""

    table: Any
    best_params: dict | None
    best_value: float | None
    study: Any
    space: SearchSpace


# --- loading ---------------------------------------------------------------------------------------

def _unknown(keys, known, where: str) -> None:
    for key in keys:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; {did_you_mean(key, known)}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(value, where: str, integer: bool):
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            pass
        else:
            # PyYAML follows YAML 1.1: 1e-6 (no dot) is read as a string, 1.0e-6 as a number.
            raise ConfigError(f"{where}={value!r} was read as text, not a number: YAML needs a dot in "
                              f"exponent notation, write e.g. 1.0e-6 instead of 1e-6")
    ok = _is_int(value) if integer else _is_number(value)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}={value!r} must be {kind}")
    return value


def _param(name: str, spec, where: str) -> Param:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a mapping such as {{type: float, low: 1.0e-5, high: 1.0e-3, "
                          f"log: true}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{where}.type={kind!r} is not a known type; use one of {', '.join(PARAM_TYPES)}")
    _unknown(spec, PARAM_KEYS[kind], where)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices={choices!r} must be a non-empty list, e.g. [8, 16, 32]")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ConfigError(f"{where}.choices: {c!r} is not a number, string, bool or null; "
                                  "optuna can only store those")
        return Param(name, kind, choices=list(choices))
    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(f"{where}: missing {key!r}; a {kind} parameter needs low and high")
    integer = kind == "int"
    low = _number(spec["low"], f"{where}.low", integer)
    high = _number(spec["high"], f"{where}.high", integer)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log={log!r} must be true or false")
    if low >= high:
        raise ConfigError(f"{where}: low={low!r} >= high={high!r}; make low smaller than high "
                          "(for a single value, move the parameter to 'fixed')")
    if log and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0 (got low={low!r}); raise low, e.g. to "
                          f"{'1' if integer else '1.0e-6'}, or set log: false")
    return Param(name, kind, low=low, high=high, log=log)


def load_space(path_or_dict, source: str | None = None) -> SearchSpace:
    """Read and check a search space from a YAML file (``yaml.safe_load``) or a dict."""
    if isinstance(path_or_dict, dict):
        raw, src = path_or_dict, source or "search space"
    else:
        path = Path(path_or_dict)
        src = source or str(path)
        raw = read_yaml(path, "search space", example="configs/search_lora.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: the top level must be a mapping of {', '.join(TOP_KEYS)}")
    _unknown(raw, TOP_KEYS, src)

    metric = raw.get("metric", {"name": "value", "direction": "maximize"})
    if not isinstance(metric, dict):
        raise ConfigError(f"{src}: metric must be a mapping such as {{name: accuracy, direction: maximize}}")
    _unknown(metric, ("name", "direction"), f"{src}: metric")
    name = metric.get("name", "value")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{src}: metric.name={name!r} must be a non-empty string such as accuracy")
    direction = metric.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise ConfigError(f"{src}: metric.direction={direction!r} is not one of {', '.join(DIRECTIONS)}; "
                          "accuracy wants maximize, a loss minimize")

    sampler = raw.get("sampler", "random")
    if sampler not in SAMPLERS:
        raise ConfigError(f"{src}: sampler={sampler!r} is not one of {', '.join(SAMPLERS)}")
    n_trials = raw.get("n_trials", 10)
    if not _is_int(n_trials) or n_trials < 1:
        raise ConfigError(f"{src}: n_trials={n_trials!r} must be an integer >= 1")
    seed = raw.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"{src}: seed={seed!r} must be an integer >= 0")

    pruner_raw = raw.get("pruner", "none")
    options = {"n_startup_trials": 2, "n_warmup_steps": 0}
    if isinstance(pruner_raw, dict):
        _unknown(pruner_raw, PRUNER_KEYS, f"{src}: pruner")
        pruner = pruner_raw.get("type", "median")
        for key in PRUNER_KEYS[1:]:
            if key in pruner_raw:
                v = pruner_raw[key]
                if not _is_int(v) or v < 0:
                    raise ConfigError(f"{src}: pruner.{key}={v!r} must be an integer >= 0")
                options[key] = v
    else:
        pruner = "none" if pruner_raw is None or pruner_raw is False else pruner_raw
    if pruner not in PRUNERS:
        raise ConfigError(f"{src}: pruner={pruner!r} is not one of {', '.join(PRUNERS)}")

    params_raw = raw.get("parameters")
    if not isinstance(params_raw, dict) or not params_raw:
        raise ConfigError(f"{src}: 'parameters' must be a non-empty mapping of name -> distribution, e.g. "
                          "learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}")
    params = {str(n): _param(str(n), spec, f"{src}: parameters.{n}") for n, spec in params_raw.items()}
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"{src}: fixed must be a mapping such as {{max_steps: 40}}")
    both = sorted(set(fixed) & set(params))
    if both:
        raise ConfigError(f"{src}: {both} are both searched and fixed; remove them from one of "
                          "'parameters' and 'fixed'")
    return SearchSpace(parameters=params, metric=name, direction=direction, sampler=sampler, n_trials=n_trials,
                       seed=seed, pruner=pruner, pruner_options=options, fixed=dict(fixed), source=src)


# --- running ---------------------------------------------------------------------------------------

def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _table(study, space: SearchSpace):
    rows = []
    for t in study.trials:
        note = t.user_attrs.get("error", "")
        if t.state.name == "PRUNED" and t.last_step is not None:
            note = f"pruned at step {t.last_step}"
        rows.append({"number": t.number, **{n: t.params.get(n) for n in space.parameters},
                     space.metric: t.value if t.state.name == "COMPLETE" else float("nan"),
                     "state": t.state.name,
                     "seconds": t.duration.total_seconds() if t.duration is not None else float("nan"),
                     "note": note})
    return pd.DataFrame(rows, columns=["number", *space.parameters, space.metric, "state", "seconds", "note"])


def run_search(space: SearchSpace, objective: Callable, n_trials: int | None = None,
               log: Callable | None = print) -> SearchResult:
    """Run ``objective(params, trial) -> float`` for each trial; failures are recorded, not fatal.

    The objective may call ``trial.report(value, step)`` and raise ``optuna.TrialPruned`` when
    ``trial.should_prune()``; reported values must point the same way as the metric (higher is
    better when maximizing), because the pruner compares them with the study's direction.
    """
    import optuna

    if n_trials is not None and (not _is_int(n_trials) or n_trials < 1):
        raise ConfigError(f"n_trials={n_trials!r} must be an integer >= 1")
    sampler = (optuna.samplers.RandomSampler(seed=space.seed) if space.sampler == "random"
               else optuna.samplers.TPESampler(seed=space.seed))
    pruner = (optuna.pruners.MedianPruner(**space.pruner_options) if space.pruner == "median"
              else optuna.pruners.NopPruner())

    def func(trial):
        params = space.suggest(trial)
        try:
            return objective(params, trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            # Kept on the trial so the table can say why it failed (optuna only logs it).
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise

    def report(study, t):
        if log is None:
            return
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        secs = t.duration.total_seconds() if t.duration is not None else float("nan")
        if t.state.name == "COMPLETE":
            outcome = f"{space.metric} {t.value:.4g}"
        elif t.state.name == "PRUNED":
            outcome = f"pruned at step {t.last_step}"
        else:
            outcome = f"FAILED ({t.user_attrs.get('error', 'no value returned')})"
        log(f"trial {t.number}: {params} -> {outcome} ({secs:.1f} s)")

    old = optuna.logging.get_verbosity()
    # Our one line per trial replaces optuna's INFO lines and its tracebacks for failed trials.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.create_study(direction=space.direction, sampler=sampler, pruner=pruner)
        study.optimize(func, n_trials=n_trials or space.n_trials, catch=(Exception,), callbacks=[report])
    finally:
        optuna.logging.set_verbosity(old)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = study.best_trial if done else None
    return SearchResult(table=_table(study, space), best_params=dict(best.params) if best else None,
                        best_value=best.value if best else None, study=study, space=space)


# --- the course's objective ------------------------------------------------------------------------

OBJECTIVE_DEFAULTS = {"learning_rate": 1e-3, "lora_r": 8, "batch_size": 8, "lora_alpha_ratio": 2,
                      "lora_dropout": 0.05, "max_steps": 40, "eval_steps": 10, "warmup_ratio": 0.05,
                      "lr_scheduler_type": "cosine", "weight_decay": 0.0}


def lora_tone_objective(model_path=None, tokenizer=None, task=None, eval_rows: int = 60, seed: int = 0,
                        eval_split: str = "validation", **fixed) -> Callable:
    """An ``objective(params, trial) -> accuracy``: a short LoRA run on the tone task.

    Per trial: a fresh base model with a LoRA adapter of rank ``lora_r`` (alpha = ``lora_alpha_ratio``
    x r), ``max_steps`` Trainer steps at ``learning_rate`` / ``batch_size``, minus the validation loss
    reported every ``eval_steps`` (so a pruner can stop a lagging run), then greedy-answer accuracy
    on the first ``eval_rows`` rows of ``eval_split``. Trial params override ``fixed``, which
    overrides ``OBJECTIVE_DEFAULTS``. The validation split chooses; keep the test split for the end.
    """
    import optuna

    _unknown(fixed, list(OBJECTIVE_DEFAULTS), "lora_tone_objective")
    if not _is_int(eval_rows) or eval_rows < 1:
        raise ConfigError(f"eval_rows={eval_rows!r} must be an integer >= 1")
    model_path = str(model_path or BASE_MODEL_DIR)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if task is None:
        task = ToneTask(tokenizer, n_test=1)   # only train and validation are used: the test split stays unseen
    if eval_split not in task.data:
        raise ConfigError(f"eval_split={eval_split!r} is not one of {list(task.data)}")
    rows = task.data[eval_split].select(range(min(eval_rows, len(task.data[eval_split]))))
    prompts = [chat_texts(tokenizer, p)[0] for p in rows["phrase"]]
    # The loss for pruning only has to rank trials; 32 rows do that at a fraction of the cost.
    eval_ds = task.tokenized(eval_split).select(range(min(len(rows), 32)))
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    base_settings = {**OBJECTIVE_DEFAULTS, **fixed}

    class ReportToTrial(TrainerCallback):
        """Hands each validation loss to optuna and stops training when the pruner says so."""

        def __init__(self, trial):
            self.trial, self.pruned_at = trial, None

        def on_step_end(self, args, state, control, **kwargs):
            # A validation at the last step cannot save any training, so skip its cost.
            if state.global_step >= state.max_steps:
                control.should_evaluate = False

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not metrics or "eval_loss" not in metrics:
                return
            # Negated: higher must be better, like the accuracy the study maximizes.
            self.trial.report(-metrics["eval_loss"], state.global_step)
            if self.trial.should_prune():
                self.pruned_at = state.global_step
                control.should_training_stop = True

    def objective(params: dict, trial=None) -> float:
        _unknown(params, list(OBJECTIVE_DEFAULTS), "trial parameters")
        s = {**base_settings, **params}
        set_seed(seed)   # same params, same LoRA init and data order -> same metric
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        model = get_peft_model(base, LoraConfig(r=int(s["lora_r"]), lora_alpha=s["lora_alpha_ratio"] * s["lora_r"],
                                                lora_dropout=s["lora_dropout"], target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
        callback = ReportToTrial(trial)
        with tempfile.TemporaryDirectory(prefix="search-trial-") as out:
            with mixed_precision_env(torch.float32):   # fp32 even after a bf16 Trainer in this process
                args = TrainingArguments(
                    output_dir=out, max_steps=int(s["max_steps"]), per_device_train_batch_size=int(s["batch_size"]),
                    per_device_eval_batch_size=32, learning_rate=float(s["learning_rate"]),
                    lr_scheduler_type=s["lr_scheduler_type"], warmup_ratio=s["warmup_ratio"],
                    weight_decay=s["weight_decay"], seed=seed, data_seed=seed,
                    # Validation loss only feeds the pruner: without a trial there is no one to tell.
                    eval_strategy="steps" if trial is not None else "no",
                    eval_steps=int(s["eval_steps"]), save_strategy="no", logging_strategy="no", report_to="none",
                    use_cpu=not torch.cuda.is_available(), disable_tqdm=True, dataloader_num_workers=0)
                trainer = Trainer(model=model, args=args, train_dataset=task.train, eval_dataset=eval_ds,
                                  data_collator=collator, callbacks=[callback])
            trainer.remove_callback(PrinterCallback)
            trainer.train()
        if callback.pruned_at is not None:
            raise optuna.TrialPruned(f"validation loss lagged the median at step {callback.pruned_at}")
        answers = generate_answers(trainer.model, tokenizer, prompts, max_new_tokens=4, batch_size=32)
        preds = [parse_label(a, task.labels) for a in answers]
        return float(classification_scores(rows["tone"], preds, task.labels)["accuracy"])

    return objective


# --- plots -----------------------------------------------------------------------------------------

def plot_search(result: SearchResult, metric: str | None = None):
    """The metric against each parameter, one axis per parameter; pruned/failed trials as x past the worst."""

    space, table = result.space, result.table
    metric = metric or space.metric
    if metric not in table.columns:
        raise ConfigError(f"metric {metric!r} is not a column of the search table; columns: {list(table.columns)}")
    names = list(space.parameters)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), sharey=True, squeeze=False)
    done = table[table["state"] == "COMPLETE"]
    other = table[table["state"] != "COMPLETE"]
    # Pruned/failed trials have no final metric: draw them just past the worst one so they stay visible.
    values = done[metric].to_numpy(dtype=float)
    span = (values.max() - values.min()) if len(values) else 1.0
    if not len(values):
        floor = 0.0
    elif space.direction == "maximize":
        floor = values.min() - 0.08 * (span or 1.0)
    else:
        floor = values.max() + 0.08 * (span or 1.0)
    for ax, name in zip(axes[0], names):
        p = space.parameters[name]
        if p.type == "categorical":
            pos = {c: i for i, c in enumerate(p.choices)}
            x_done = np.array([pos[v] for v in done[name]], dtype=float)
            x_other = np.array([pos[v] for v in other[name] if v in pos], dtype=float)
            ax.set_xticks(range(len(p.choices)), [str(c) for c in p.choices])
            ax.set_xlim(-0.5, len(p.choices) - 0.5)
        else:
            x_done = done[name].to_numpy(dtype=float)
            x_other = other[name].dropna().to_numpy(dtype=float)
            if p.log and p.type == "int":
                # Base 2 puts ticks on the ranks people use (8, 16, 32, 64), written plainly.
                ax.set_xscale("log", base=2)
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
            elif p.log:
                ax.set_xscale("log")
        ax.scatter(x_done, values, color="#4c72b0", label="complete", zorder=3)
        if len(x_other):
            ax.scatter(x_other, [floor] * len(x_other), marker="x", color="#c44e52", label="pruned / failed",
                       zorder=3)
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{space.sampler} search, {len(table)} trials")
    fig.tight_layout()
    return fig
