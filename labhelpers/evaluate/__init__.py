"""Evaluation: metrics, text metrics, perplexity, batched generation, comparing models, plots, diagnosing poor
results."""
