"""A wrong notebook parameter stops the first cell after the parameters, with a message naming it."""

import json

import papermill
import pytest

from labhelpers.paths import NOTEBOOKS_DIR

CASES = [
    ("02_lora", {"method": "lorra"}, "method='lorra'"),
    ("02_lora", {"max_steps": -5}, "max_steps=-5"),
    ("02_lora", {"model_name": "./no/such/model"}, "no such folder"),
    ("02_lora", {"max_steps": "lots"}, "max_steps='lots'"),
    ("05_evaluation", {"qa_steps": 0}, "qa_steps=0"),
    ("03_qlora", {"quant_type": "int3"}, "quant_type='int3'"),
    ("03_qlora", {"grad_accum": 0}, "grad_accum=0"),
    ("04_custom_data", {"validation_fraction": 0.9}, "validation_fraction=0.9"),
    ("04_custom_data", {"min_margin": "high"}, "min_margin='high'"),
    ("04_custom_data", {"world_steps": 0}, "world_steps=0"),
    ("04_custom_data", {"world_model": "./no/such/model"}, "no such folder"),
    ("05_evaluation", {"eval_steps": 0}, "eval_steps=0"),
    ("05_evaluation", {"learning_rate": -1}, "learning_rate=-1"),
    ("06_onnx_deployment", {"n_parity": 0}, "n_parity=0"),
    ("07_troubleshooting", {"more_data_rows": 10}, "more_data_rows=10"),
    ("07_troubleshooting", {"check_effects": "yes"}, "check_effects='yes'"),
    ("08_advanced", {"search_sampler": "grid"}, "search_sampler='grid'"),
    ("08_advanced", {"minority_share": 0.5}, "minority_share=0.5"),
    ("09_olive", {"max_seq_len": 8}, "max_seq_len=8"),
    ("09_olive", {"min_accuracy": 2}, "min_accuracy=2"),
]


@pytest.mark.parametrize("stem, params, message", CASES, ids=[f"{c[0]}-{next(iter(c[1]))}" for c in CASES])
def test_bad_parameter_fails_fast_and_clearly(tmp_path, stem, params, message):
    out = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(NOTEBOOKS_DIR / f"{stem}.ipynb"), str(out), parameters=params,
                                   cwd=str(NOTEBOOKS_DIR), kernel_name="python3", progress_bar=False)
    assert message in str(err.value)
    cells = json.loads(out.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    tags = [c["metadata"].get("tags", []) for c in code]
    # parameters, injected-parameters, then the validation cell: nothing after it ran.
    failed = next(i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.get("outputs", [])))
    assert "injected-parameters" in tags[failed - 1], f"failed in code cell {failed}, not right after the parameters"
    assert all(c.get("execution_count") is None for c in code[failed + 1:])
