"""Names and units every room shares, defined once: the fine-tuning methods and the GiB."""

GIB = 1024**3
MIB = 1024**2

#: Every fine-tuning method the course runs -> what it trains (for tables and messages).
METHODS = {
    "full": "every weight of the model (full-parameter fine-tuning)",
    "lora": "low-rank matrices A, B beside frozen linear weights (LoRA)",
    "qlora": "LoRA on a frozen 4-bit NF4 base (QLoRA)",
    "ia3": "one learned scaling vector per adapted activation ((IA)^3, an adapter-style PEFT method)",
}
#: What the memory estimate, fitcheck, measuring and the scale bench compare (in table order).
TRAIN_METHODS = ("lora", "qlora", "full")
#: The memory calculator also prices plain inference.
MEMORY_METHODS = ("inference", *TRAIN_METHODS)
#: What the training notebooks and the finetune CLI run (an adapter on a full or 4-bit base).
ADAPTER_METHODS = ("lora", "qlora")
