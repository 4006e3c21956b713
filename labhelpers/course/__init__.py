"""The course itself: running notebooks (one by one or over a grid), preflight, exercises, widgets."""
