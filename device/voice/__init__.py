"""Voices: where their sources are, the typed manifest provisioning writes, and loading one for synthesis."""
