"""labhelpers.train.search: the course's YAML search space, optuna runs, pruning, failures, plots, the real
objective."""

import math

import optuna
import pytest
import yaml

from labhelpers.errors import ConfigError
from labhelpers.paths import REPO_ROOT
from labhelpers.train.search import load_space, lora_tone_objective, plot_search, run_search

EXAMPLE = REPO_ROOT / "configs" / "search_lora.yaml"
SPACE = {"metric": {"name": "score", "direction": "maximize"}, "sampler": "random", "n_trials": 8, "seed": 0,
         "parameters": {"learning_rate": {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True},
                        "lora_r": {"type": "int", "low": 4, "high": 128, "log": True},
                        "batch_size": {"type": "categorical", "choices": [8, 16, 32, 64]}}}


def synth(params, trial):
    """A cheap bowl with its top at lr 10^-3.5, r ~ 18, batch 16."""
    return (-(math.log10(params["learning_rate"]) + 3.5) ** 2 - (math.log2(params["lora_r"]) - 4.2) ** 2
            - (params["batch_size"] != 16))


def space(**changes):
    return load_space({**SPACE, **changes})


def test_example_config_keeps_the_chapters_ranges():
    s = load_space(EXAMPLE)
    lr, r, bs = (s.parameters[n] for n in ("learning_rate", "lora_r", "batch_size"))
    assert (lr.type, lr.low, lr.high, lr.log) == ("float", 1e-6, 1e-3, True)
    assert (r.type, r.low, r.high) == ("int", 8, 64)
    assert bs.choices == [8, 16, 32]
    assert (s.metric, s.direction, s.sampler, s.pruner) == ("accuracy", "maximize", "random", "median")
    assert s.n_trials >= 1 and s.fixed["max_steps"] == 150 and s.fixed["lora_alpha_ratio"] == 2


@pytest.mark.parametrize("change, words", [
    ({"parameters": {"lr": {"type": "float", "low": 1e-3, "high": 1e-3}}},
     ["parameters.lr", "low=0.001 >= high", "smaller"]),
    ({"parameters": {"lr": {"type": "float", "low": 0.0, "high": 1e-3, "log": True}}},
     ["parameters.lr", "low > 0", "log: false"]),
    ({"parameters": {"lora_r": {"type": "int", "low": 0, "high": 64, "log": True}}}, ["parameters.lora_r", "low > 0"]),
    ({"parameters": {"lr": {"type": "uniform", "low": 0.0, "high": 1.0}}},
     ["parameters.lr.type", "'uniform'", "categorical"]),
    ({"parameters": {"bs": {"type": "categorical", "choices": []}}}, ["parameters.bs.choices", "non-empty list"]),
    ({"parameters": {"bs": {"type": "categorical", "values": [8]}}}, ["parameters.bs", "'values'", "choices"]),
    ({"parameters": {"lr": {"type": "float", "low": 1e-6, "hgh": 1e-3}}}, ["parameters.lr", "'hgh'", "'high'"]),
    ({"parameters": {"lora_r": {"type": "int", "low": 8.5, "high": 64}}}, ["parameters.lora_r.low", "integer"]),
    ({"sampler": "grid"}, ["sampler='grid'", "random, tpe"]),
    ({"metric": {"name": "accuracy", "direction": "up"}}, ["metric.direction='up'", "maximize"]),
    ({"n_trials": 0}, ["n_trials=0", ">= 1"]),
    ({"pruner": "hyperband"}, ["pruner='hyperband'", "none, median"]),
    ({"sampeler": "tpe"}, ["unknown key 'sampeler'", "did you mean 'sampler'"]),
    ({"fixed": {"batch_size": 8}}, ["batch_size", "both searched and fixed"]),
    ({"parameters": {}}, ["'parameters' must be a non-empty mapping"]),
])
def test_bad_spaces_are_named_with_file_key_and_fix(tmp_path, change, words):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, **change}))
    with pytest.raises(ConfigError) as err:
        load_space(path)
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, (w, msg)


def test_exponent_without_dot_is_named_as_yaml_text(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("parameters:\n  learning_rate: {type: float, low: 1e-6, high: 1.0e-3, log: true}\n")
    with pytest.raises(ConfigError, match=r"learning_rate.low='1e-6' was read as text.*1\.0e-6"):
        load_space(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="no such search space file; check the path"):
        load_space(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty.yaml: the search space file is empty"):
        load_space(tmp_path / "empty.yaml")


def test_random_sampler_is_deterministic_for_a_seed():
    def params(seed):
        return run_search(space(seed=seed), synth, log=None).table[list(SPACE["parameters"])].values.tolist()
    assert params(0) == params(0)
    assert params(0) != params(1)


def test_tpe_beats_or_equals_random_on_a_synthetic_objective():
    # Averaged over seeds: on one seed either can win by luck (seed 0 alone is a near tie).
    best = {s: [run_search(space(sampler=s, seed=seed, n_trials=30), synth, log=None).best_value for seed in range(5)]
            for s in ("random", "tpe")}
    assert sum(best["tpe"]) >= sum(best["random"]), best


def test_median_pruner_prunes_a_lagging_curve():
    def curve(params, trial):
        for step in range(1, 6):
            value = step * params["lora_r"]    # a small rank climbs slowly: it lags the median
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    s = space(n_trials=12, pruner="median")
    table = run_search(s, curve, log=None).table
    pruned = table[table["state"] == "PRUNED"]
    assert len(pruned) >= 1, table
    assert pruned["lora_r"].max() < table.loc[table["state"] == "COMPLETE", "lora_r"].max()
    assert pruned["note"].str.startswith("pruned at step").all()
    assert (run_search(space(n_trials=12), curve, log=None).table["state"] == "COMPLETE").all(), "no pruner, no pruning"


def test_a_raising_objective_is_recorded_as_fail_and_the_search_goes_on():
    lines = []

    def flaky(params, trial):
        if trial.number == 1:
            raise RuntimeError("out of memory (on purpose)")
        return synth(params, trial)

    result = run_search(space(n_trials=4), flaky, log=lines.append)
    states = result.table["state"].tolist()
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"], states
    assert result.table.loc[1, "note"] == "RuntimeError: out of memory (on purpose)"
    assert math.isnan(result.table.loc[1, "score"])
    assert "FAILED (RuntimeError: out of memory (on purpose))" in lines[1] and len(lines) == 4
    assert result.best_value == result.table["score"].max()


def test_table_columns_and_best():
    result = run_search(space(n_trials=5), synth, log=None)
    assert list(result.table.columns) == ["number", "learning_rate", "lora_r", "batch_size", "score", "state",
                                          "seconds", "note"]
    assert result.table["number"].tolist() == list(range(5)) and (result.table["seconds"] >= 0).all()
    best_row = result.table.loc[result.table["score"].idxmax()]
    assert result.best_params == {k: best_row[k] for k in SPACE["parameters"]}
    assert run_search(space(n_trials=7), synth, n_trials=2, log=None).table.shape[0] == 2, "n_trials overrides"


def test_plot_search_has_one_axis_per_parameter():
    import matplotlib.pyplot as plt

    def some_fail(params, trial):
        if trial.number % 3 == 0:
            raise optuna.TrialPruned()
        return synth(params, trial)

    fig = plot_search(run_search(space(n_trials=6), some_fail, log=None))
    axes = fig.axes
    assert [a.get_xlabel() for a in axes] == ["learning_rate", "lora_r", "batch_size"]
    assert [a.get_xscale() for a in axes] == ["log", "log", "linear"]
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ["8", "16", "32", "64"]
    assert [len(c.get_offsets()) for c in axes[0].collections] == [4, 2], "complete and pruned drawn apart"
    plt.close(fig)


class _AlwaysPrune:
    """A stand-in trial whose pruner always says stop."""

    def __init__(self):
        self.reports = []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return True


def test_one_real_lora_trial_is_seeded_and_prunable():
    import datasets

    datasets.disable_progress_bars()
    objective = lora_tone_objective(eval_rows=16, seed=0, max_steps=10, eval_steps=5)
    params = {"learning_rate": 1e-3, "lora_r": 8, "batch_size": 8}
    first = objective(params)
    assert isinstance(first, float) and 0.0 <= first <= 1.0
    assert objective(params) == first, "same params and seed must give the same metric"
    trial = _AlwaysPrune()
    with pytest.raises(optuna.TrialPruned, match="step 5"):
        objective(params, trial)
    assert [s for s, _ in trial.reports] == [5] and trial.reports[0][1] < 0, "minus the validation loss, once"
    # The reported loss is the trained adapter's: measured 10.04 after 5 steps at lr 1e-3 against 11.99 with
    # lr 1e-9 (no training). The bar: 1.0 better, half the measured gap.
    frozen = _AlwaysPrune()
    with pytest.raises(optuna.TrialPruned):
        objective({**params, "learning_rate": 1e-9}, frozen)
    assert trial.reports[0][1] > frozen.reports[0][1] + 1.0, (trial.reports, frozen.reports)
    with pytest.raises(ConfigError, match="lora_rank"):
        objective({"lora_rank": 8})
