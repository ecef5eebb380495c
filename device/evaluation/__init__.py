"""Measuring voices: fixed evaluation sentences, intelligibility and distance metrics, the benchmark."""
