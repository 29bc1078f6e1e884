"""samplers package (see ARCHITECTURE.md)."""
