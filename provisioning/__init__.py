"""Turns a voice into models deployable on this device (split, INT8 gate, TensorRT, students)."""
