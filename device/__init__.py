"""The jetvox device side: CLI, text frontend, streaming synthesis, outputs and the MQTT daemon."""

__version__ = "0.1.0"
