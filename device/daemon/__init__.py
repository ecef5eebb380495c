"""The resident MQTT daemon: intake, de-duplication, queue, synthesis worker, outputs, systemd integration."""
