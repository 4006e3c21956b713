"""Helpers for the slm-finetune-lab course notebooks.

Each module does one job (paths, data generation, templates, metrics, ...);
the notebooks call the real transformers/peft/datasets APIs themselves.
"""

__version__ = "0.1.0"
