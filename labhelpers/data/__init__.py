"""Data: reading and validating datasets, templates and chat formats, YAML run configs, the generated datasets."""
