"""jetvox speech is as intelligible as piper-tts's on the same sentences (pocketsphinx pooled WER)."""

from __future__ import annotations

import numpy as np
import pytest

from jetvox.device.evaluation.quality import transcribe, word_error_rate
from jetvox.device.synthesis.synthesizer import Synthesizer
from jetvox.device.text.normalize import normalize
from jetvox.device.voice.loader import load_voice
from tests.voicefix import voice_config

pytestmark = pytest.mark.slow

# Our own set: not EVAL_SENTENCES (the gates use those), still in the device's style.
SENTENCES = (
    "The bedroom window is open and it is raining.",
    "Temperature in the nursery is 19 °C.",
    "The front gate closed at 8:15 PM.",
    "Please check the water softener, salt is low.",
    "Energy use today was 12.5 kWh, 10% less than yesterday.",
    "The oven has reached 180 degrees.",
    "Someone is at the back door.",
    "Printer two is out of paper.",
)


def test_jetvox_wer_is_within_005_of_piper_tts() -> None:
    from piper import PiperVoice, SynthesisConfig

    # Both without noise: sampled noise moved jetvox's pooled WER on these 8 sentences from 0.15 to 0.34
    # between runs of the same code, so the comparison is made where both are deterministic.
    cfg = voice_config(synthesis__noise_scale=0.0, synthesis__noise_w=0.0)
    voice = load_voice(cfg)
    synth = Synthesizer(voice, cfg.synthesis)
    piper = PiperVoice.load(voice.manifest.source.model)
    refs, ours, theirs = [], [], []
    try:
        for text in SENTENCES:
            refs.append(normalize(text))
            audio = np.concatenate([c.audio for c in synth.synthesize(text)])
            ours.append(transcribe(audio, voice.sample_rate))
            ref_audio = np.concatenate([c.audio_float_array for c in piper.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))])
            theirs.append(transcribe(ref_audio, voice.sample_rate))
    finally:
        synth.close()
        voice.close()
    wer_ours = word_error_rate(refs, ours)
    wer_piper = word_error_rate(refs, theirs)
    print(f"pooled WER: jetvox {wer_ours:.3f}, piper-tts {wer_piper:.3f}")
    for r, o, t in zip(refs, ours, theirs):
        print(f"  ref: {r}\n  jetvox: {o}\n  piper: {t}")
    assert wer_ours <= wer_piper + 0.05
    assert wer_ours < 0.5, "far from zero is fine for pocketsphinx, but not this far"
