"""Memory and hardware: what this machine has, what a run will need (estimate, fitcheck), and measuring it."""
