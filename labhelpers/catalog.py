"""The course's notebooks: title, default model and expected time on a 2-core laptop CPU (one place for README,
00 and tests)."""

TINY, SMOLLM2 = "tiny", "smollm2-135m"

#: notebook stem -> title, one-line summary, ``default_model`` (the parameters cell's ``model_name``: SmolLM2 where
#: the lesson needs what a pretrained model knows, the tiny Llama where many runs teach mechanics), and minutes on
#: 2 CPU cores on each model with its "auto" schedule (``tiny_minutes``: -p model_name tiny; ``smollm2_minutes``:
#: -p model_name smollm2-135m), measured one at a time on 2 idle cores of an Intel CPU with AMX bf16. Each default
#: model's figure and the tiny Llama's everywhere: `make course` from a fresh clone on 2026-12-03 (the tiny runs of
#: 02, 04, 05, 06, 09 with `-p model_name tiny` the same day); SmolLM2 on 00, 01, 03, 07, 08: earlier runs of the
#: same schedules; 04 and 05 on SmolLM2 again on 2026-12-04, once ``finetune.run`` trained in bf16 where the CPU has
#: it (`python -m labhelpers course --notebooks 04 05 06 08`). A CPU without bf16 takes 2-3x longer (README).
NOTEBOOKS = {
    "00_setup": {
        "title": "Setup check", "default_model": TINY, "tiny_minutes": 0.1, "smollm2_minutes": 0.5,
        "summary": "versions, hardware, dtype, which models fit this machine's memory"},
    "01_concepts": {
        "title": "What fine-tuning changes: full vs LoRA vs QLoRA vs adapters", "default_model": TINY,
        "tiny_minutes": 1.6, "smollm2_minutes": 19,
        "summary": "transfer learning; four methods measured side by side; low-rank updates; memory calculator"},
    "02_lora": {
        "title": "LoRA fine-tuning", "default_model": SMOLLM2, "tiny_minutes": 0.5, "smollm2_minutes": 1.8,
        "summary": "LoRA on SmolLM2 for the tone task; compare with the base model, asked and not"},
    "03_qlora": {
        "title": "QLoRA", "default_model": TINY, "tiny_minutes": 1.3, "smollm2_minutes": 7,
        "summary": "NF4/FP4/int8 error, 4-bit footprints, QLoRA with batch 1 x accumulation 16 vs LoRA"},
    "04_custom_data": {
        "title": "Custom data and run configs; the four task types", "default_model": SMOLLM2,
        "tiny_minutes": 1.4, "smollm2_minutes": 2.5,
        "summary": "load, validate (report), template, split, YAML run config; classification, generation, "
                   "extraction, summarisation"},
    "05_evaluation": {
        "title": "Evaluation and monitoring", "default_model": SMOLLM2, "tiny_minutes": 0.4, "smollm2_minutes": 1.5,
        "summary": "early stopping, live curves, TensorBoard; F1, confusion, perplexity, BLEU, chrF, ROUGE; "
                   "resume; rubric"},
    "06_onnx_deployment": {
        "title": "Deployment with ONNX Runtime", "default_model": SMOLLM2, "tiny_minutes": 0.8, "smollm2_minutes": 3.2,
        "summary": "merge, export (optimum, GenAI fp32/int4), parity, size/speed/accuracy; switch LoRA adapters "
                   "at run time; the serve app; Olive auto-opt"},
    "07_troubleshooting": {
        "title": "Troubleshooting", "default_model": TINY, "tiny_minutes": 1.4, "smollm2_minutes": 24,
        "summary": "overfitting and its remedies; memory (checkpointing, accumulation, 4-bit, fit prediction); "
                   "padding vs packing, bf16 on CPU; poor results diagnosed; environment"},
    "08_advanced": {
        "title": "Advanced: multi-adapter, search, custom losses, batch runs, scale-out", "default_model": TINY,
        "tiny_minutes": 1.6, "smollm2_minutes": 13,
        "summary": "two adapters on one base switched and combined; optuna search of the chapter's space; "
                   "contrastive and class-weighted losses; papermill grids; accelerate launch"},
    "09_olive": {
        "title": "The Olive workflow, executed", "default_model": SMOLLM2, "tiny_minutes": 1.7, "smollm2_minutes": 3.6,
        "summary": "olive finetune (LoRA, QLoRA), auto-opt to int4 ONNX Runtime GenAI, generate-adapter and "
                   "convert-adapters for two adapters on one base; every chapter command mapped to one that runs"},
}
