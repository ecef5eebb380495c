"""TensorRT on the device: platform detection, engine builds, the provisioning step and `make verify-device`."""
