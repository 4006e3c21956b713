import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from labhelpers.evaluate import plots  # noqa: E402

SWEEP = pd.DataFrame({"method": ["full", "full", "lora", "lora"], "learning_rate": [1e-4, 1e-5, 1e-4, 1e-3],
                      "accuracy": [0.9, 0.6, 0.0, 0.9]})


def test_sweep_curves_draw_one_sorted_line_per_group_and_the_band():
    fig = plots.sweep_curves(SWEEP, "learning_rate", "accuracy", "method", band=(1e-5, 1e-4), band_label="chapter")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"full", "lora"}
    assert list(lines["full"].get_xdata()) == [1e-5, 1e-4] and list(lines["full"].get_ydata()) == [0.6, 0.9]
    assert ax.get_xscale() == "log" and len(ax.patches) == 1   # the shaded range


def test_sweep_curves_name_a_missing_column():
    with pytest.raises(ValueError, match=r"no column \['acc'\]"):
        plots.sweep_curves(SWEEP, "learning_rate", "acc", "method")
