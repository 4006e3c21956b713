"""Each notebook's workshop schedule and asserted bars, per model the course ships, in one table.

A notebook's step counts default to ``"auto"``: the schedule measured for the model it runs on (the
tiny Llama trains in a fraction of a second a step, SmolLM2-135M in about two). Its teaching asserts
("auto" bars) use the bars measured with that schedule, for that model. A longer run keeps the bars (it
should do at least as well); a shorter one, or a model not in the table, reports without asserting,
and says so. Every bar sits below the figure measured with seed 0 on 2 CPU cores by the margin its
comment states; ``tests/train/test_workshop.py`` checks the table's shape.
"""

from __future__ import annotations

from pathlib import Path

from labhelpers.errors import ConfigError
from labhelpers.models.presets import PRESETS
from labhelpers.paths import REAL_MODEL_DIR

TINY, SMOLLM2 = "tiny", "smollm2-135m"
AUTO = "auto"

#: notebook -> model -> {"steps": the schedule (parameter -> value: step counts, and a learning rate where the
#: models need different ones), "bars": asserted bar -> value}.
#: A bar of True (for ``check_effects``/``assert_relations``) means: the notebook's own effect asserts hold
#: for this model at this schedule (measured), so "auto" turns them on.
WORKSHOP: dict[str, dict[str, dict[str, dict]]] = {
    "01": {
        TINY: {"steps": {"max_steps": 150}, "bars": {"assert_relations": True}},
        # measured at 30 steps, 200 held-out phrases (19 min): LoRA 0.915, QLoRA 0.885, full 0.875, IA3 0.74;
        # every relation asserted held (100 phrases, 11 min: 0.90 / 0.90 / 0.88 / 0.78)
        SMOLLM2: {"steps": {"max_steps": 30}, "bars": {"assert_relations": True}},
    },
    "02": {
        TINY: {"steps": {"max_steps": 300}, "bars": {"min_accuracy": 0.90}},
        # measured at 30 steps (02's default; 289 s on 2 idle cores of an AMD EPYC, fp32): 0.88 on 100 held-out
        # phrases (base 0.00, the base asked for the tone 0.19); 30 steps on an Intel CPU with AMX (bf16,
        # bench/lr_sweep.py) 0.91; 60 steps 0.91. The bar leaves 0.08 under the lower one; asking stays 0.6 below it.
        SMOLLM2: {"steps": {"max_steps": 30}, "bars": {"min_accuracy": 0.80}},
    },
    "03": {
        TINY: {"steps": {"max_steps": 60, "logging_steps": 10, "eval_steps": 20, "learning_rate": 5e-3},
               "bars": {"min_accuracy": 0.90, "max_gap_to_lora": 0.05}},
        # batch 1 x 16 with gradient checkpointing on a 4-bit base: about 21 s a step on 2 cores (the notebook: 7 min).
        # Measured twice at 10 steps: QLoRA 0.49 (base 0.00), LoRA 0.87 with the same settings, so QLoRA is asserted
        # to learn (bar 0.4) but the tiny model's "within 5 points of LoRA" is not claimed at this schedule.
        SMOLLM2: {"steps": {"max_steps": 10, "logging_steps": 2, "eval_steps": 5, "learning_rate": 2e-3},
                  "bars": {"min_accuracy": 0.4}},
    },
    "04": {
        TINY: {"steps": {"qa_steps": 100, "task_steps": 150},
               "bars": {"min_margin": {"qa": 0.5, "classification": 0.5, "generation": 0.5, "extraction": 0.3,
                                       "summarization": 0.3}}},
        # measured (04's default, 237 s on 2 idle cores, 2026-12-02; 30 test rows a task), base -> tuned: Q&A exact
        # match 0.00 -> 0.93, classification 0.00 -> 1.00, generation on-tone 0.10 -> 1.00, extraction field match
        # 0.00 -> 1.00, summarisation ROUGE-L 0.15 -> 1.00. At 20 steps (40 rows): 0.95, 0.90, 0.93, 0.99, 1.00.
        # Shortened to 10 steps on 2026-12-02 for CPUs without bf16 and measured there (AMD EPYC, 1 thread beside
        # another notebook, as `make test` runs it): Q&A 0.00 -> 0.97, classification 0.00 -> 0.80, generation
        # 0.10 -> 0.87, extraction 0.00 -> 0.85, summarisation 0.15 -> 0.98.
        # Each margin sits 0.1-0.2 under the gap measured; an untrained adapter gains nothing.
        SMOLLM2: {"steps": {"qa_steps": 10, "task_steps": 10},
                  "bars": {"min_margin": {"qa": 0.7, "classification": 0.6, "generation": 0.6, "extraction": 0.6,
                                          "summarization": 0.6}}},
    },
    "05": {
        TINY: {"steps": {"max_steps": 300, "qa_steps": 120, "resume_steps": 40, "eval_steps": 25,
                         "early_stopping_patience": 3},
               "bars": {"min_accuracy": 0.90}},
        # SmolLM2's validation loss (48 rows, every 5 steps, LoRA dropout 0) is lowest at step 25 (0.092) and rises
        # at 30 and 35 (0.102, 0.108), so patience 2 stops the run at 35 of 40 with step 25's weights. Measured (the
        # notebook's default, 358 s on 2 idle cores of an AMD EPYC, fp32; twice, the same figures): accuracy
        # 0.00 -> 0.94 on 100 held-out phrases, Q&A exact match 0.00 -> 0.97 (12 steps), resume: the same loss.
        # (The earlier 60-step schedule, dropout 0.05: stopped at 40, 0.93.) The bar leaves 0.09.
        SMOLLM2: {"steps": {"max_steps": 40, "qa_steps": 12, "resume_steps": 4, "eval_steps": 5,
                            "early_stopping_patience": 2},
                  "bars": {"min_accuracy": 0.85}},
    },
    "06": {
        # measured: PyTorch, optimum int8 and ORT GenAI int4 all 1.00 on the tone phrases
        TINY: {"steps": {"max_steps": 300, "qa_steps": 120},
               "bars": {"min_accuracy": 0.85, "max_int4_drop": 0.05, "max_int8_drop": 0.05}},
        # measured on 100 held-out phrases at 60 steps, three adapters: PyTorch 0.92 / 0.90 / 0.91, ORT GenAI int4
        # drop -0.01 / 0.04 / 0.04, optimum's dynamic int8 (activations quantised per tensor at run time) drop 0.04 /
        # 0.18 / 0.11. At 30 steps (the default; 488 s on 2 idle cores of an AMD EPYC, fp32): PyTorch 0.88, int4
        # 0.90 (drop -0.02), int8 0.73 (drop 0.15). The bars: accuracy leaves 0.08, int4 four phrases over the
        # largest drop seen, int8 0.1 over it (a broken quantisation scores ~0: a drop near 0.9).
        SMOLLM2: {"steps": {"max_steps": 30, "qa_steps": 10},
                  "bars": {"min_accuracy": 0.80, "max_int4_drop": 0.08, "max_int8_drop": 0.25}},
    },
    "07": {
        TINY: {"steps": {"overfit_rows": 16, "overfit_steps": 60, "eval_steps": 10, "poor_steps": 60},
               "bars": {"check_effects": True,
                        "remedy_min_gain": {"lower rank": 0.05, "lower alpha": 0.05, "dropout": 0.05,
                                            "weight decay": 0.05, "early stopping": 0.05, "more data": 0.05},
                        "more_data_accuracy_gain": 0.1, "prompt_gain": 0.3, "imbalance_gain": 0.2,
                        "unmasked_gain": 0.3}},
        # SmolLM2 does not overfit 16 rows (60 steps: validation loss falls to 0.074 and stays); on 8 rows its
        # validation loss is lowest at step 5 (0.92) and 1.54 at step 20. Measured (seed 0; 1430 s with these bars
        # asserted, the same figures as the report-only run): final
        # validation loss 1.50 for the problem run; lower rank 1.46 and weight decay 1.47 (no bar), lower alpha
        # 1.28, dropout 1.29, early stopping 0.92, more data 0.08; accuracy 0.60 -> 0.72 with more data;
        # training template 0.86 vs plain prompt 0.73; oversampling 0.67 -> 0.55 (worse: no bar); nothing masked
        # 0.85 vs 0.86 (no bar). Every other effect holds with the tiny model's bar.
        SMOLLM2: {"steps": {"overfit_rows": 8, "overfit_steps": 20, "eval_steps": 5, "poor_steps": 20},
                  "bars": {"check_effects": True,
                           "remedy_min_gain": {"lower rank": None, "lower alpha": 0.1, "dropout": 0.1,
                                               "weight decay": None, "early stopping": 0.3, "more data": 0.5},
                           "more_data_accuracy_gain": 0.05, "prompt_gain": 0.05, "imbalance_gain": None,
                           "unmasked_gain": None}},
    },
    "08": {
        # search, 6 trials of 150 steps (61 s): best validation accuracy 1.00 (chance 0.25, the default config 0.88);
        # bar 0.9. At 40 steps a trial the best reached only 0.35.
        TINY: {"steps": {"adapter_steps": 100, "n_trials": 6, "search_steps": 150, "contrastive_steps": 80,
                         "weighted_steps": 40},
               "bars": {"check_effects": True, "search_min_accuracy": 0.9}},
        # Measured (seed 0; 954 s reporting, then 770 s with these bars asserted, the same figures): adapters tone
        # 0.00 -> 0.85, extract fields 0.00 -> 0.98; search (5 trials of 15 steps, 48-130 s each) best 0.85
        # validation accuracy (lr 8.6e-4, r 42, batch 16) vs the default config 0.82 and chance 0.25 (bar 0.75);
        # contrastive gap 0.01 -> 0.41, AUC 0.63 -> 0.95; class-weighted minority recall 0.00 -> 0.13 at 15 steps.
        # At 40 steps a trial took 115-224 s.
        SMOLLM2: {"steps": {"adapter_steps": 20, "n_trials": 5, "search_steps": 15, "contrastive_steps": 20,
                            "weighted_steps": 15},
                  "bars": {"check_effects": True, "search_min_accuracy": 0.75}},
    },
    "09": {
        # measured at seed 0: Olive LoRA 1.00, the course's LoRA 1.00, Olive QLoRA 0.49, int4 + adapter 1.00. Olive's
        # start depends on the seed (seven unseeded starts: 0.51-1.00), so another seed keeps only the floor 0.4.
        TINY: {"steps": {"max_steps": 400, "qlora_steps": 60, "course_steps": 150},
               "bars": {"min_accuracy": 0.9, "any_seed_min_accuracy": 0.4, "qlora_accuracy": 0.4,
                        "course_accuracy": 0.9, "check_effects": True, "max_int4_drop": 0.1}},
        # measured three times (same figures, seed 0; the third with the course's path at lora_dropout 0 and eager
        # attention, 09's default, 301 s): Olive's LoRA adapter 0.74 (40 steps of 4 pieces), the course's LoRA
        # path 0.81 (40 steps), Olive QLoRA 0.46 after 10 steps, Olive's int4 model + its int4 adapter 0.60 (a
        # drop of 0.14), 0.00 without the adapter. Those runs were on an Intel CPU with AMX; on an AMD EPYC without
        # AVX-512 (2026-12-02, same seed) Olive's adapter reached 0.99 and int4 + adapter 0.71: a drop of 0.28 (the
        # same seed trains a different adapter on other matmul kernels). The bar allows 0.35 so both hold; "the
        # adapter must be active" (int4 + adapter >= int4 alone + 0.3) still fails a broken export.
        # Shortened on 2026-12-02 for CPUs without bf16 and measured there (AMD EPYC, 1 thread beside another job,
        # as `make test` runs it): Olive LoRA 0.99, int4 + adapter 0.71 (unchanged), the course's LoRA 0.82 after
        # 20 steps (0.81 after 40), Olive QLoRA 0.35 after 5 steps (loss 5.03 -> 1.30; 0.46 after 10). The QLoRA
        # bar sits over 0.25, what one label for every phrase scores; an untrained adapter scores 0.00 like the base.
        SMOLLM2: {"steps": {"max_steps": 40, "qlora_steps": 5, "course_steps": 20},
                  "bars": {"min_accuracy": 0.6, "qlora_accuracy": 0.3, "course_accuracy": 0.75, "check_effects": True,
                           "max_int4_drop": 0.35}},
    },
}


#: Notebook 04, section 8: one run config on the tiny Llama and on SmolLM2, a task whose words the tiny corpus
#: never holds (``labhelpers.data.world_data``, 30 held-out words, chance 1/3).
#: Measured at 30 steps, seed 0: tiny 0.00 -> 0.00 (final train loss 7.1), SmolLM2 0.03 -> 1.00 (train loss 0.59;
#: at 40 steps the same accuracies; at 20, the default since 2026-12-02, the same on an AMD EPYC, 1 thread).
#: The tiny bar is chance + 0.17 (a model that learned nothing useful stays under it); SmolLM2's allows 4 of 30
#: words wrong.
WORLD_TASK = {"steps": {"world_steps": 20}, "bars": {"tiny_max": 0.50, "real_min": 0.85, "min_gap": 0.50}}


def world_bars(real_model_path: str, world_steps: int) -> dict | None:
    """Notebook 04's tiny-vs-real bars, when the real model is SmolLM2 and the run is at least the measured one."""
    if model_key(real_model_path) != SMOLLM2 or world_steps < WORLD_TASK["steps"]["world_steps"]:
        return None
    return dict(WORLD_TASK["bars"])


def model_key(model_path: str) -> str | None:
    """The table's name for a resolved model path: ``tiny``, ``smollm2-135m`` (the converted folder or the
    hub original), else None (a model the course does not ship: its runs report without asserting)."""
    if model_path == PRESETS[TINY].path:
        return TINY
    if model_path == PRESETS[SMOLLM2].path:
        return SMOLLM2
    try:
        if Path(model_path).resolve() == REAL_MODEL_DIR.resolve():
            return SMOLLM2
    except OSError:
        return None
    return None


def entry(notebook: str, model_path: str) -> dict | None:
    """``{"steps": ..., "bars": ...}`` for this notebook on this model, or None."""
    if notebook not in WORKSHOP:
        raise ConfigError(f"no workshop table for notebook {notebook!r}; known: {', '.join(WORKSHOP)}")
    key = model_key(model_path)
    return WORKSHOP[notebook].get(key) if key else None


def steps(notebook: str, model_path: str, **values) -> dict:
    """Each step parameter with ``"auto"`` replaced by this model's workshop schedule.

    A model without a schedule needs explicit numbers: the error names the parameter and the fix."""
    found = entry(notebook, model_path)
    out = {}
    for name, value in values.items():
        if value != AUTO:
            out[name] = value
            continue
        if found is None or name not in found["steps"]:
            raise ConfigError(f"{name}='auto' has no workshop value for model {model_path!r} in notebook "
                              f"{notebook}: set it, e.g. -p {name} 50")
        out[name] = found["steps"][name]
    return out


def bar(notebook: str, model_path: str, name: str, value, schedule: dict):
    """The bar a notebook asserts for ``name``: ``"auto"`` gives this model's measured bar when ``schedule``
    (the step parameters in use) is at least the workshop one, else None (report only); anything else is
    returned as given, for the notebook to check."""
    if value != AUTO:
        return value
    found = entry(notebook, model_path)
    if found is None or name not in found["bars"]:
        return None
    if not all(_meets(k, schedule[k], v) for k, v in found["steps"].items() if k in schedule):
        return None
    return found["bars"][name]


def _meets(name: str, value, measured) -> bool:
    """A step count meets the schedule at or above it (a longer run should do at least as well); any other
    setting (rows, a learning rate, how often to validate) only at the measured value."""
    if name.endswith("steps") and name not in ("eval_steps", "logging_steps"):
        return value >= measured
    return value == measured


def effect_bars(notebook: str, model_path: str) -> dict:
    """This model's measured bars for a notebook; for a model not in the table, the tiny model's (the
    figures the notebook's asserts were written for, used when ``check_effects=True`` forces them)."""
    found = entry(notebook, model_path) or WORKSHOP[notebook][TINY]
    return dict(found["bars"])


def describe(notebook: str, model_path: str) -> str:
    """One line a notebook prints: which schedule and bars apply, or why none do."""
    found = entry(notebook, model_path)
    if found is None:
        return (f"no measured bars for {model_path} in notebook {notebook}: 'auto' asserts are off "
                "(the run reports its figures)")
    key = model_key(model_path)
    return f"workshop setting for {key}: {found['steps']}; bars {found['bars']} (labhelpers/train/workshop.py)"
