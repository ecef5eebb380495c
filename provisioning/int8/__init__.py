"""INT8: calibration corpus and latents, static Q/DQ quantisation, and the quality-gated provisioning step."""
