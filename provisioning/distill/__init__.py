"""Distillation of small student models (acoustic model and vocoder) from a Piper teacher voice."""
