"""Models: the presets (real hub models and the embedded tiny Llama), their architectures, and how the tiny one is
built."""
