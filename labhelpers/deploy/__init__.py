"""Deployment: ONNX export (optimum, ORT GenAI), running exported models with switchable adapters, serving, Olive."""
