"""The memory calculator: ipywidgets controls over ``labhelpers.memory``'s documented estimate.

``calculator_table`` is the pure part (inputs -> a table and a verdict), testable without a browser;
``memory_calculator`` wraps it in widgets and redraws on every change. A bad input (a size outside
0.1-70 B, a zero sequence length, ...) shows the ConfigError's one-line message instead of a traceback.
"""

from __future__ import annotations

from . import memory
from .errors import ConfigError, LabError

CUSTOM = "custom size"
PARTS = (("weights", "weights_gib"), ("gradients", "gradients_gib"), ("optimizer state", "optimizer_gib"),
         ("activations", "activations_gib"), ("total", "total_gib"))


def available_memory_gib() -> tuple[float, str]:
    """(GiB available, where): free GPU memory if CUDA is visible, else the RAM psutil reports available."""
    import psutil

    try:
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info(0)
            return free / memory.GIB, f"free GPU memory ({torch.cuda.get_device_name(0)})"
    except Exception:  # no torch / broken CUDA: the RAM figure still helps
        pass
    return psutil.virtual_memory().available / memory.GIB, "available RAM"


def model_choices() -> list[str]:
    """The presets (labhelpers.models.PRESETS) plus the free-size entry."""
    from .models import PRESETS

    return list(PRESETS) + [CUSTOM]


def calculator_table(model: str = "llama-3.2-1b", params_b: float | None = None, method: str = "qlora",
                     precision: str = "bf16", seq_len: int = 512, batch_size: int = 1, lora_r: int = 16,
                     gradient_checkpointing: bool = False, available_gib: float | None = None,
                     lora_dropout: float = 0.05) -> dict:
    """Estimate memory for one choice; returns ``{"table", "estimate", "shape", "fits", "available_gib",
    "where", "text"}``. ``table`` is a pandas DataFrame (GiB per part), ``text`` a one-line verdict.

    ``model`` is a preset name or ``"custom size"`` with ``params_b`` in 0.1-70 (billions; the shape comes
    from ``memory.shape_for_params``). ``method``: full, lora, qlora or inference. LoRA/QLoRA train rank
    ``lora_r`` adapters on every linear layer of each block (``memory.lora_trainable_params``) with
    ``lora_dropout`` (0.05, as the course's LoraConfig; dropout keeps a copy of each adapted input).
    """
    import pandas as pd

    choices = model_choices()
    if model == CUSTOM:
        if params_b is None:
            raise ConfigError("params_b is needed with model='custom size' (billions of parameters, 0.1-70)")
        shape = memory.shape_for_params(params_b)
        label = f"{params_b:g} B (Llama-like shape)"
    elif model in choices:
        shape = memory.preset_shape(model)
        label = model
    else:
        raise ConfigError(f"model={model!r} must be one of {', '.join(choices)}")
    if method not in memory.METHODS:
        raise ConfigError(f"method={method!r} must be one of {', '.join(memory.METHODS)}")
    if precision not in memory.PRECISION_BYTES:
        raise ConfigError(f"precision={precision!r} must be one of {', '.join(memory.PRECISION_BYTES)}")
    kwargs = {}
    if method in ("lora", "qlora"):
        kwargs["trainable_params"] = memory.lora_trainable_params(shape, lora_r)
        kwargs["lora_dropout"] = lora_dropout
    if method == "qlora":
        kwargs["n_unquantized"] = shape["n_embedding"]
    est = memory.estimate_memory(shape["n_params"], method, precision, seq_len=seq_len, batch_size=batch_size,
                                 n_layers=shape["n_layers"], hidden_size=shape["hidden"],
                                 intermediate_size=shape["intermediate"], vocab_size=shape["vocab"],
                                 gradient_checkpointing=bool(gradient_checkpointing), **kwargs)
    if available_gib is None:
        available_gib, where = available_memory_gib()
    else:
        where = "given"
    ok = memory.fits(est, available_gib)
    table = pd.DataFrame({"GiB": [est[k] for _, k in PARTS]}, index=[name for name, _ in PARTS])
    table["share"] = table["GiB"] / est["total_gib"]
    verdict = "fits" if ok else "does NOT fit"
    text = (f"{label}, {method}, {precision}, batch {batch_size} x seq {seq_len}: {est['total_gib']:.2f} GiB "
            f"-> {verdict} in 80 % of this machine's {available_gib:.1f} GiB {where}")
    return {"table": table, "estimate": est, "shape": shape, "fits": ok, "available_gib": available_gib,
            "where": where, "text": text}


def memory_calculator(model: str = "llama-3.2-1b", method: str = "qlora", precision: str = "bf16",
                      seq_len: int = 512, batch_size: int = 1, params_b: float = 7.0, lora_r: int = 16,
                      available_gib: float | None = None):
    """The widget box: pick model/size, method, precision, sequence length, batch size (and LoRA rank,
    gradient checkpointing); the table below updates on every change. ``box.output`` is the HTML widget
    with the result, ``box.controls`` the controls by name (handy in tests)."""
    import html

    import ipywidgets as w

    style = {"description_width": "150px"}
    controls = {
        "model": w.Dropdown(options=model_choices(), value=model, description="model", style=style),
        "params_b": w.FloatLogSlider(value=params_b, base=10, min=-1, max=1.845, step=0.01,
                                     description="custom size (B)", style=style, readout_format=".3g"),
        "method": w.Dropdown(options=list(memory.METHODS), value=method, description="method", style=style),
        "precision": w.Dropdown(options=list(memory.PRECISION_BYTES), value=precision, description="precision",
                                style=style),
        "seq_len": w.IntText(value=seq_len, description="sequence length", style=style),
        "batch_size": w.IntText(value=batch_size, description="batch size", style=style),
        "lora_r": w.IntText(value=lora_r, description="LoRA rank r", style=style),
        "gradient_checkpointing": w.Checkbox(value=False, description="gradient checkpointing", style=style),
    }
    output = w.HTML()

    def redraw(_=None):
        values = {name: c.value for name, c in controls.items()}
        controls["params_b"].disabled = values["model"] != CUSTOM
        try:
            result = calculator_table(available_gib=available_gib, **values)
        except LabError as err:
            output.value = f"<b style='color:#b00'>{html.escape(str(err))}</b>"
            return
        color = "#070" if result["fits"] else "#b00"
        output.value = (result["table"].to_html(float_format=lambda v: f"{v:.3f}")
                        + f"<p style='color:{color}'><b>{html.escape(result['text'])}</b></p>")

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    box = w.VBox(list(controls.values()) + [output])
    box.controls, box.output = controls, output
    return box
