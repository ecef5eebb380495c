"""Audio out: PCM conversion, sinks (speaker, WAV, raw) and the daemon's output targets."""
