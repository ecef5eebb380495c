"""Development helpers, not installed: a private mosquitto launcher and the MQTT latency probe."""
