"""analysis package (see ARCHITECTURE.md)."""
