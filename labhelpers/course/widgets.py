"""The course's two widgets: the memory calculator (notebook 01) and the template playground (notebook 04).

``calculator_table`` is the calculator's pure part (inputs -> a table and a verdict), testable without a
browser; ``memory_calculator`` wraps it in widgets and redraws on every change. A bad input (a size outside
0.1-70 B, a zero sequence length, ...) shows the ConfigError's one-line message instead of a traceback.

``template_tokens`` is the playground's pure part (template + row -> training text and which tokens the
loss trains, exactly as ``templates.encode`` prepares them); ``template_playground`` lets you edit the
template and the row's fields and see the result. A bad template shows its error in one line.
"""

from __future__ import annotations

import html

import pandas as pd

from labhelpers.checks import check_choice, check_int
from labhelpers.constants import MEMORY_METHODS
from labhelpers.data import templates
from labhelpers.errors import ConfigError, LabError
from labhelpers.memory import estimate
from labhelpers.memory.hardware import available_memory_gib
from labhelpers.models.presets import PRESETS
from labhelpers.models.shapes import shape_of

CUSTOM = "custom size"
PARTS = (("weights", "weights_gib"), ("gradients", "gradients_gib"), ("optimizer state", "optimizer_gib"),
         ("activations", "activations_gib"), ("total", "total_gib"))


def model_choices() -> list[str]:
    """The presets (labhelpers.models.presets.PRESETS) plus the free-size entry."""

    return list(PRESETS) + [CUSTOM]


def calculator_table(model: str = "llama-3.2-1b", params_b: float | None = None, method: str = "qlora",
                     precision: str = "bf16", seq_len: int = 512, batch_size: int = 1, lora_r: int = 16,
                     gradient_checkpointing: bool = False, available_gib: float | None = None,
                     lora_dropout: float = 0.05) -> dict:
    """Estimate memory for one choice; returns ``{"table", "estimate", "shape", "fits", "available_gib",
    "where", "text"}``. ``table`` is a pandas DataFrame (GiB per part), ``text`` a one-line verdict.

    ``model`` is a preset name or ``"custom size"`` with ``params_b`` in 0.1-70 (billions; the shape comes
    from ``estimate.shape_for_params``). ``method``: full, lora, qlora or inference. LoRA/QLoRA train rank
    ``lora_r`` adapters on every linear layer of each block (``estimate.lora_trainable_params``) with
    ``lora_dropout`` (0.05, as the course's LoraConfig; dropout keeps a copy of each adapted input).
    """

    choices = model_choices()
    if model == CUSTOM:
        if params_b is None:
            raise ConfigError("params_b is needed with model='custom size' (billions of parameters, 0.1-70)")
        shape = estimate.shape_for_params(params_b)
        label = f"{params_b:g} B (Llama-like shape)"
    elif model in choices:
        shape = shape_of(model)
        label = model
    else:
        raise ConfigError(f"model={model!r} must be one of {', '.join(choices)}")
    check_choice("method", method, MEMORY_METHODS)
    if precision not in estimate.PRECISION_BYTES:
        raise ConfigError(f"precision={precision!r} must be one of {', '.join(estimate.PRECISION_BYTES)}")
    kwargs = {}
    if method in ("lora", "qlora"):
        kwargs["trainable_params"] = estimate.lora_trainable_params(shape, lora_r)
        kwargs["lora_dropout"] = lora_dropout
    if method == "qlora":
        kwargs["n_unquantized"] = shape["n_embedding"]
    est = estimate.estimate_memory(shape["n_params"], method, precision, seq_len=seq_len, batch_size=batch_size,
                                 n_layers=shape["n_layers"], hidden_size=shape["hidden"],
                                 intermediate_size=shape["intermediate"], vocab_size=shape["vocab"],
                                 gradient_checkpointing=bool(gradient_checkpointing), **kwargs)
    if available_gib is None:
        available_gib, where = available_memory_gib()
    else:
        where = "given"
    ok = estimate.fits(est, available_gib)
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

    import ipywidgets as w

    style = {"description_width": "150px"}
    controls = {
        "model": w.Dropdown(options=model_choices(), value=model, description="model", style=style),
        "params_b": w.FloatLogSlider(value=params_b, base=10, min=-1, max=1.845, step=0.01,
                                     description="custom size (B)", style=style, readout_format=".3g"),
        "method": w.Dropdown(options=list(MEMORY_METHODS), value=method, description="method", style=style),
        "precision": w.Dropdown(options=list(estimate.PRECISION_BYTES), value=precision, description="precision",
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


# ------------------------------------------------------------------------------ template playground
#: Notebook 04's template (the embedded model's chat format) and a row of its Q&A data.
PLAYGROUND_TEMPLATE = "<|user|> {input}</s><|assistant|> {output}"
PLAYGROUND_ROW = {"input": "What does the word gloomy mean?", "output": "It means sad."}
#: What a template can raise besides LabError: str.format's own complaints ("Single '}' encountered ...",
#: "Replacement index 0 out of range" for a bare ``{}``).
TEMPLATE_ERRORS = (LabError, ValueError, KeyError, IndexError, AttributeError)


def one_line_error(err: BaseException) -> str:
    """``"DataError: first line of the message"``: what a widget shows instead of a traceback."""
    text = str(err).strip() or repr(err)
    return f"{type(err).__name__}: {text.splitlines()[0]}"


def template_tokens(tokenizer, template: str = PLAYGROUND_TEMPLATE, row: dict | None = None,
                    max_seq_len: int = 48) -> dict:
    """What training sees for one row under a text template, prepared as ``templates.encode`` does.

    Returns ``{"prompt", "text", "tokens", "n_trained", "n_masked", "truncated"}``: ``text`` is the full
    training text (BOS in front, EOS once at the end), ``tokens`` a list of ``(token, trained?)``
    (prompt tokens carry label -100 and are masked). A bad template raises (one of TEMPLATE_ERRORS).
    """

    row = dict(PLAYGROUND_ROW if row is None else row)
    check_int("max_seq_len", max_seq_len, low=1)
    prompt, full = templates.texts(template, tokenizer, row, where="playground row")
    example = templates.encode(template, tokenizer, row, max_seq_len, where="playground row")
    full = templates.with_single_eos(full, tokenizer.eos_token, start=len(prompt))
    n_all = len(tokenizer(full, add_special_tokens=False)["input_ids"])
    tokens = templates.show_trained_tokens(tokenizer, example)
    n_trained = sum(on for _, on in tokens)
    return {"prompt": prompt, "text": full, "tokens": tokens, "n_trained": n_trained,
            "n_masked": len(tokens) - n_trained, "truncated": max(0, n_all - len(tokens))}


def template_html(result: dict) -> str:
    """The playground's output: the training text, then every token marked trained (green) or masked."""

    chips = "".join(
        f"<span class='lab-token lab-token-{'trained' if on else 'masked'}'"
        f" title='{'trained' if on else 'masked (-100)'}'"
        f" style='display:inline-block;margin:1px;padding:0 3px;border-radius:3px;font-family:monospace;"
        f"background:{'#c8efc8' if on else '#e4e4e4'};color:{'#063' if on else '#666'}'>{html.escape(tok)}</span>"
        for tok, on in result["tokens"])
    marks = {"Ġ": "a space before the word", "Ċ": "a newline", "▁": "a space before the word"}
    legend = ", ".join(f"<code>{m}</code> = {what}" for m, what in marks.items()
                       if any(m in tok for tok, _ in result["tokens"]))
    legend = f"<div style='color:#666;font-size:90%'>{legend}</div>" if legend else ""
    cut = (f"; <b style='color:#b00'>{result['truncated']} token(s) cut by max_seq_len</b>"
           if result["truncated"] else "")
    return (f"<div><b>training text</b> (prompt, then the answer and EOS):"
            f"<pre style='white-space:pre-wrap;margin:2px 0 6px 0'>{html.escape(result['text'])}</pre>"
            f"<b>tokens</b>: {len(result['tokens'])} — <span style='color:#063'>{result['n_trained']} trained"
            f"</span> (answer + EOS), <span style='color:#666'>{result['n_masked']} masked</span> "
            f"(prompt, label -100){cut}<div style='line-height:1.9'>{chips}</div>{legend}</div>")


def template_playground(tokenizer, template: str = PLAYGROUND_TEMPLATE, row: dict | None = None,
                        max_seq_len: int = 48):
    """Edit a text template and a row's fields; see the training text and which tokens are trained.

    One text box per field of ``row`` (default: a Q&A row of notebook 04) and one for the template; the
    output redraws on every change. A placeholder the row lacks, a template without a prompt and an
    answer field, or a broken ``{`` shows the error's one-line message. ``box.controls`` holds the
    controls by name (``"template"``, ``"max_seq_len"``, ``"field:<name>"``), ``box.output`` the HTML.
    """

    import ipywidgets as w

    row = dict(PLAYGROUND_ROW if row is None else row)
    style = {"description_width": "110px"}
    layout = w.Layout(width="95%")
    controls = {"template": w.Textarea(value=template, description="template", rows=2, style=style, layout=layout)}
    for name, value in row.items():
        controls[f"field:{name}"] = w.Text(value=str(value), description=name, style=style, layout=layout)
    controls["max_seq_len"] = w.IntText(value=max_seq_len, description="max_seq_len", style=style)
    output = w.HTML()

    def redraw(_=None):
        fields = {name.split(":", 1)[1]: c.value for name, c in controls.items() if name.startswith("field:")}
        try:
            result = template_tokens(tokenizer, controls["template"].value, fields, controls["max_seq_len"].value)
        except TEMPLATE_ERRORS as err:
            output.value = f"<b class='lab-error' style='color:#b00'>{html.escape(one_line_error(err))}</b>"
            return
        output.value = template_html(result)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    box = w.VBox(list(controls.values()) + [output])
    box.controls, box.output = controls, output
    return box
