"""Orchestration: each CLI command is one function here, composed from the library modules."""
