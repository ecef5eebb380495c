"""Streaming synthesis: acoustic feeds, the vocoder chunk schedule, and the synthesizer that yields PCM chunks."""
