"""The pronunciation lexicon: file format and its errors, what it changes in the phonemes and the words heard."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jetvox.device.text.lexicon import Lexicon, LexiconError, LexiconFile

GOOD = """\
# words: whole words, case-insensitive unless case_sensitive: true
words:
  jetvox: {ipa: dʒˈɛtvɑks}
  SQL: sequel
  CO2: {say: C O two, case_sensitive: true}
patterns:
  'v(\\d+)\\.(\\d+)': version \\1 point \\2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lexicon.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_words_and_patterns_are_applied(tmp_path: Path) -> None:
    lex = Lexicon.load(write(tmp_path, GOOD))
    assert lex.apply("Jetvox runs SQL, sql and mySQL.") == "[[ dʒˈɛtvɑks ]] runs sequel, sequel and mySQL."
    assert lex.apply("CO2 and co2") == "C O two and co2"
    assert lex.apply("Update to v2.13 now") == "Update to version 2 point 13 now"


@pytest.mark.parametrize("text, fragment", [
    ("words:\n  a: x\n  b: {sey: y}\n", ":3: b: unknown key 'sey'"),
    ("words:\n  a: {say: x, ipa: y}\n", ":2: a: give exactly one of say or ipa"),
    ("words:\n  a: x\npatterns:\n  '(': y\n", ":4: (: not a valid regular expression"),
    ("word:\n  a: x\n", ":1: unknown section 'word'"),
    ("words:\n  a: ''\n", ":2: a: expected a non-empty string"),
    ("words: [a, b]\n", ":1: words: expected a mapping"),
    ("words:\n  a: [[ x ]]\n", ":2: a: expected"),
    ("patterns:\n  'a(b)': x \\2\n", ":2: a(b): refers to group 2, the pattern has 1"),
])
def test_errors_name_the_line(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(LexiconError) as err:
        Lexicon.load(write(tmp_path, text))
    assert fragment in str(err.value), str(err.value)


def test_the_file_is_followed_and_a_broken_edit_keeps_the_last_good_one(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "words:\n  a: one\n")
    follow = LexiconFile(path)
    assert follow.current().apply("a") == "one"
    path.write_text("words:\n  a: two\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert follow.current().apply("a") == "two"
    path.write_text("words:\n  a: {bad: 1}\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert follow.current().apply("a") == "two"
    assert any(":2: a: unknown key 'bad'" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


@pytest.mark.slow
def test_an_entry_changes_the_phonemes_and_the_word_heard(tmp_path: Path) -> None:
    quality = pytest.importorskip("jetvox.device.evaluation.quality")
    from jetvox.device.synthesis.synthesizer import Synthesizer
    from jetvox.device.voice.loader import load_voice
    from tests.voicefix import voice_config

    sentence = "Please open the window in the kitchen now."
    lexicon = write(tmp_path, "words:\n  kitchen: garage\n  window: {ipa: dˈɔːɹ}\n")
    plain_cfg = voice_config(voice__name="joe-fast", synthesis__noise_scale=0.0, synthesis__noise_w=0.0)
    lex_cfg = voice_config(voice__name="joe-fast", synthesis__noise_scale=0.0, synthesis__noise_w=0.0,
                           synthesis__lexicon=str(lexicon))
    heard = {}
    with load_voice(plain_cfg) as voice:
        for name, cfg in (("plain", plain_cfg), ("lexicon", lex_cfg)):
            synth = Synthesizer(voice, cfg.synthesis)
            try:
                ids = synth.sentences(sentence)
                audio = synth.vocode_full(synth.acoustic(ids[0], synth.defaults))
                heard[name] = (ids, quality.transcribe(audio, voice.sample_rate))
            finally:
                synth.close()
    assert heard["plain"][0] != heard["lexicon"][0]
    assert "kitchen" in heard["plain"][1] and "garage" not in heard["plain"][1], heard
    assert "garage" in heard["lexicon"][1] and "kitchen" not in heard["lexicon"][1], heard
    assert "door" in heard["lexicon"][1], heard  # the IPA entry: "window" is said as "door"


@pytest.mark.slow
def test_say_tries_a_lexicon_and_a_broken_one_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.voicefix import provisioned_state_dir

    state = str(provisioned_state_dir())
    good = write(tmp_path, "words:\n  jetvox: {ipa: dʒˈɛtvɑks}\n")
    run = subprocess.run([sys.executable, "-m", "jetvox.device.cli", "say", "--state-dir", state, "--lexicon",
                          str(good), "-o", str(tmp_path / "out.wav"), "Jetvox is ready."],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and (tmp_path / "out.wav").stat().st_size > 10000, run.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("words:\n  jetvox: {ipa: dʒˈɛtvɑks}\n  co2: {sey: x}\n")
    run = subprocess.run([sys.executable, "-m", "jetvox.device.cli", "say", "--state-dir", state, "--lexicon",
                          str(bad), "-o", str(tmp_path / "out2.wav"), "Jetvox is ready."],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and f"{bad}:3: co2: unknown key 'sey'" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
