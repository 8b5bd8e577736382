"""The decision core: pure code driven by an injected clock (debounce, windows, incidents)."""
