"""Training: the notebooks' settings, the finetune CLI, methods (full, LoRA, QLoRA, IA3), quantization, losses, search,
monitoring."""
