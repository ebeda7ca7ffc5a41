"""The report behind docs/results.md: `python -m report`, one module per section."""
