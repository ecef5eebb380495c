"""Vocoder pairs made on the training device: the utterance pack, the pairs themselves, their batches and a run."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the distillation extra (pip install .[train]) is not installed")

from jetvox.device.synthesis.feeds import acoustic_feeds  # noqa: E402
from jetvox.engines.onnxrt import ort_session  # noqa: E402
from jetvox.provisioning.distill import hifigan, teacher_data, teacher_pairs  # noqa: E402
from jetvox.provisioning.distill.aligned import load_acoustic  # noqa: E402
from jetvox.provisioning.distill.models import HOP  # noqa: E402
from jetvox.provisioning.distill.train import PairSource, TrainConfig, _pair_data, main, train  # noqa: E402
from tests.test_distill import tiny_runs  # noqa: E402,F401  (the module's fixture, shared)
from tests.test_hifigan import _piper_decoder_onnx  # noqa: E402


def test_the_pack_keeps_ids_and_durations_of_the_usable_utterances(tmp_path: Path,
                                                                    tiny_runs: dict[str, Path]) -> None:  # noqa: F811
    paths = teacher_data.cached_paths(tiny_runs["vocoder"].parent / "cache")
    items = [teacher_data.load_item(p) for p in paths]
    broken = tmp_path / "cache"
    shutil.copytree(paths[0].parent, broken)
    first = teacher_data.load_item(broken / paths[0].name)
    np.savez(broken / paths[0].name, ids=first.ids.astype(np.int16), durations=first.durations + 1, z0=first.z0,
             zn=first.zn, wav=first.wav, wav_from=np.array("z0"), text=np.array("off by one"))  # durations != frames
    utts = teacher_pairs.from_cache(teacher_data.cached_paths(broken))
    assert len(utts.ids) == len(items) - 1
    again = teacher_pairs.load(teacher_pairs.save(utts, tmp_path / "pack.npz"))
    assert all(np.array_equal(a, b) for a, b in zip(again.ids, [it.ids for it in items[1:]]))
    assert all(np.array_equal(a, b) for a, b in zip(again.durations, [it.durations for it in items[1:]]))
    assert again.digest() == utts.digest() and len(utts.digest()) == 16
    assert teacher_pairs.Utterances(utts.ids[:2], utts.durations[:2]).digest() != utts.digest()
    np.savez(tmp_path / "other.npz", lengths=np.array([1]))
    with pytest.raises(ValueError, match="utterance pack of version"):
        teacher_pairs.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="teacher_pairs --out"):
        teacher_pairs.load(tmp_path / "missing.npz")


def test_first_n_packs_the_first_utterances_only(tmp_path: Path, tiny_runs: dict[str, Path],  # noqa: F811
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cache = tiny_runs["vocoder"].parent / "cache"
    whole = teacher_pairs.from_cache(teacher_data.cached_paths(cache))
    teacher_pairs.main(["--out", str(tmp_path / "two.npz"), "--cache", str(cache), "--first", "2"])
    two = teacher_pairs.load(tmp_path / "two.npz")
    assert len(two.ids) == 2 < len(whole.ids)
    assert two.digest() == teacher_pairs.Utterances(whole.ids[:2], whole.durations[:2]).digest()
    with pytest.raises(SystemExit) as exc:
        teacher_pairs.main(["--out", str(tmp_path / "none.npz"), "--cache", str(cache), "--first", "0"])
    assert exc.value.code == 2 and "--first is a positive number of utterances; got 0" in capsys.readouterr().err


def test_the_target_is_the_teachers_audio_of_the_students_own_latent(tmp_path: Path,
                                                                    tiny_runs: dict[str, Path]) -> None:  # noqa: F811
    teacher = _piper_decoder_onnx(tmp_path / "vocoder.onnx")
    acoustic, _ = load_acoustic(tiny_runs["acoustic"] / "ckpt.pt")
    utts = teacher_pairs.from_cache(teacher_data.cached_paths(tiny_runs["vocoder"].parent / "cache"))
    latents, audio = teacher_pairs.make_pairs(utts, acoustic, hifigan.load_teacher(tmp_path / "vocoder.onnx"),
                                              torch.device("cpu"), torch.float32)
    with torch.no_grad():
        ids, dur = torch.from_numpy(utts.ids[1])[None], torch.from_numpy(utts.durations[1])[None]
        z, _ = acoustic.forward_train(ids, torch.ones(1, 1, ids.shape[1]), dur, int(dur.sum()))
        expected = teacher(z).reshape(-1)
    assert torch.equal(latents[1], z[0]) and latents[1].shape == (192, int(utts.durations[1].sum()))
    torch.testing.assert_close(audio[1], expected)
    assert audio[1].shape[0] == latents[1].shape[1] * HOP and audio[1].abs().max() > 0


def test_a_compensation_is_applied_to_the_latent_before_the_teacher_hears_it(
        tmp_path: Path, tiny_runs: dict[str, Path]) -> None:  # noqa: F811
    teacher = _piper_decoder_onnx(tmp_path / "vocoder.onnx")
    acoustic, _ = load_acoustic(tiny_runs["acoustic"] / "ckpt.pt")
    utts = teacher_pairs.from_cache(teacher_data.cached_paths(tiny_runs["vocoder"].parent / "cache"))
    rng = np.random.default_rng(3)
    scale, shift = rng.uniform(0.8, 1.5, 192).astype(np.float32), rng.normal(0, 0.1, 192).astype(np.float32)
    cpu, f32 = torch.device("cpu"), torch.float32
    plain, _ = teacher_pairs.make_pairs(utts, acoustic, teacher, cpu, f32)
    latents, audio = teacher_pairs.make_pairs(utts, acoustic, teacher, cpu, f32, (scale, shift))
    want = plain[1] * torch.from_numpy(scale)[:, None] + torch.from_numpy(shift)[:, None]
    torch.testing.assert_close(latents[1], want)
    with torch.no_grad():
        torch.testing.assert_close(audio[1], teacher(want[None]).reshape(-1))
    with pytest.raises(ValueError, match="compensation of 192 channels expected"):
        teacher_pairs.make_pairs(utts, acoustic, teacher, cpu, f32, (scale[:5], shift[:5]))
    pack = teacher_pairs.save(utts, tmp_path / "pack.npz")
    source = PairSource(pack, tiny_runs["acoustic"] / "ckpt.pt", tmp_path / "vocoder.onnx")
    shipped = Path(__file__).resolve().parent.parent / "device" / "voice" / "shipped" / "joe-fast" / "acoustic.onnx"
    as_trained, _ = _pair_data(source, None, cpu, "vocoder")
    compensated, _ = _pair_data(replace(source, variance=shipped), None, cpu, "vocoder")
    assert "variance" not in as_trained and compensated == {**as_trained, "variance": compensated["variance"]}


def test_a_batch_is_segments_of_the_pairs_with_zeros_past_the_ends() -> None:
    rng = np.random.default_rng(0)
    lengths = [10, 25, 12]
    latents = [torch.full((192, t), float(k + 1)) + torch.arange(t) / 100 for k, t in enumerate(lengths)]
    audio = [torch.arange(t * HOP, dtype=torch.float32) + 1e5 * (k + 1) for k, t in enumerate(lengths)]
    data = teacher_pairs.PairData(latents, audio, batch=64, segment=8, context=3, rng=rng)
    z, wav = data.batch()
    assert z.shape == (64, 192, 14) and wav.shape == (64, 8 * HOP) and z.dtype == wav.dtype == torch.float32
    for b in range(64):
        k = int(wav[b, 0] // 1e5) - 1
        start = int(wav[b, 0] - 1e5 * (k + 1)) // HOP
        assert torch.equal(wav[b], audio[k][start * HOP : (start + 8) * HOP])
        for j in range(14):
            frame = start - 3 + j
            want = latents[k][:, frame] if 0 <= frame < lengths[k] else torch.zeros(192)
            assert torch.equal(z[b, :, j], want), (b, j)
    with pytest.raises(ValueError, match="has 30 frames or more"):
        teacher_pairs.PairData(latents, audio, batch=2, segment=30, context=0, rng=rng)


def test_pairs_are_kept_beside_the_pack_and_made_again_only_for_another_key(tmp_path: Path) -> None:
    pack, cpu, made = tmp_path / "pack.npz", torch.device("cpu"), []

    def maker(n: int) -> Callable[[], teacher_pairs.Pairs]:
        def make() -> teacher_pairs.Pairs:
            made.append(n)
            return [torch.full((192, 4), float(n))], [torch.full((4 * HOP,), float(n))]
        return make

    digests = {"utterances": "u", "acoustic": "a", "teacher": "t"}
    key_a = teacher_pairs.pairs_key(digests, torch.float16, cpu)
    key_b = teacher_pairs.pairs_key({**digests, "acoustic": "b"}, torch.float16, cpu)
    assert len({key_a, key_b, teacher_pairs.pairs_key(digests, torch.float32, cpu)}) == 3
    z, wav = teacher_pairs.kept_pairs(pack, key_a, maker(1), cpu)
    z2, wav2 = teacher_pairs.kept_pairs(pack, key_a, maker(2), cpu)
    assert made == [1] and torch.equal(z2[0], z[0]) and torch.equal(wav2[0], wav[0])
    teacher_pairs.kept_pairs(pack, key_b, maker(3), cpu)
    assert made == [1, 3] and [p.name for p in tmp_path.iterdir()] == [f"pack.pairs-{key_b}.pt"]
    (tmp_path / f"pack.pairs-{key_b}.pt").write_bytes(b"cut short by a full disk")
    z4, _ = teacher_pairs.kept_pairs(pack, key_b, maker(4), cpu)
    assert made == [1, 3, 4] and float(z4[0][0, 0]) == 4.0
    assert float(teacher_pairs.kept_pairs(pack, key_b, maker(5), cpu)[0][0][0, 0]) == 4.0


def test_an_exported_acoustic_model_gives_its_own_latents_as_in_use(tmp_path: Path,
                                                                    tiny_runs: dict[str, Path]) -> None:  # noqa: F811
    """An .onnx ACOUSTIC (the hybrid, the shipped student) is run as the daemon runs it: its own durations and
    compensation, not the pack's durations; its digest is the file's, and a second compensation is refused."""
    teacher = _piper_decoder_onnx(tmp_path / "vocoder.onnx")
    utts = teacher_pairs.from_cache(teacher_data.cached_paths(tiny_runs["vocoder"].parent / "cache"))
    shipped = Path(__file__).resolve().parent.parent / "device" / "voice" / "shipped" / "joe-fast" / "acoustic.onnx"
    cpu, f32 = torch.device("cpu"), torch.float32
    latents, audio = teacher_pairs.make_pairs(utts, teacher_pairs.OnnxAcoustic(shipped), teacher, cpu, f32)
    own = ort_session(shipped).run(["z"], acoustic_feeds(utts.ids[1].tolist(), (0.667, 1.0, 0.8)))[0]
    assert torch.equal(latents[1], torch.from_numpy(own[0]))
    with torch.no_grad():
        torch.testing.assert_close(audio[1], teacher(torch.from_numpy(own)).reshape(-1))
    pack = teacher_pairs.save(utts, tmp_path / "pack.npz")
    digests, _ = _pair_data(PairSource(pack, shipped, tmp_path / "vocoder.onnx"), None, cpu, "vocoder")
    assert digests["acoustic"] == hashlib.sha256(shipped.read_bytes()).hexdigest()[:16]
    with pytest.raises(ValueError, match="carries its own compensation"):
        _pair_data(PairSource(pack, shipped, tmp_path / "vocoder.onnx", shipped), None, cpu, "vocoder")


def test_a_run_on_made_pairs_records_them_and_resumes_only_with_them(tmp_path: Path,
                                                                    tiny_runs: dict[str, Path]) -> None:  # noqa: F811
    _piper_decoder_onnx(tmp_path / "vocoder.onnx")
    pack = teacher_pairs.save(teacher_pairs.from_cache(teacher_data.cached_paths(tiny_runs["vocoder"].parent / "cache")),
                              tmp_path / "pack.npz")
    source = PairSource(pack, tiny_runs["acoustic"] / "ckpt.pt", tmp_path / "vocoder.onnx")
    run = tmp_path / "run"
    shutil.copytree(tiny_runs["vocoder"], run)
    before = int(torch.load(run / "ckpt.pt", weights_only=False)["step"])
    summary = train(TrainConfig(what="vocoder", steps=before + 2), [], run, resume=True, pairs=source, batch=3)
    digests = {"utterances": teacher_pairs.load(pack).digest(), "acoustic": load_acoustic(source.acoustic)[1],
               "teacher": summary["pairs"]["teacher"]}
    assert summary["steps"] == before + 2 and summary["pairs"] == digests
    assert summary["changes"][-2:] == [{"step": before, "pairs": digests}, {"step": before, "batch": 3}]
    state = torch.load(run / "ckpt.pt", weights_only=False)
    assert state["config"]["batch"] == 3 and all(t.device.type == "cpu" for t in state["model"].values())
    with pytest.raises(ValueError, match="give --pairs"):
        train(TrainConfig(what="vocoder", steps=before + 3), [], run, resume=True)
    again = train(TrainConfig(what="vocoder", steps=before + 3), [], run, resume=True, pairs=source)
    assert again["steps"] == before + 3 and again["changes"] == summary["changes"]  # nothing new to record
    assert len(list(tmp_path.glob("pack.pairs-*.pt"))) == 1  # made once, kept, read by the second run
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device"):
            train(TrainConfig(what="vocoder", steps=before + 4), [], run, resume=True, pairs=source, device="cuda")


def test_pair_flags_are_checked_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--what", "vocoder", "--steps", "1", "--out", str(tmp_path / "run")]
    for extra, message in ((["--pairs", "p.npz"], "expected 2 arguments"),
                           (["--pairs", "p.npz", "a.pt", "--aligned-fraction", "1", "--aligned-acoustic", "a.pt"],
                            "replaces --aligned-fraction"),
                           (["--device", "tpu"], "--device expects"),
                           (["--batch", "0"], "--batch is a positive")):
        with pytest.raises(SystemExit):
            main(base + extra)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_teachers_durations_alone_make_the_caches_pack(tmp_path: Path) -> None:
    """`--corpus` (no cache: the teacher's acoustic model run now) packs what `--cache` packs from the caches."""
    from tests.voicefix import provisioned_state_dir

    state = provisioned_state_dir()
    corpora = [["The heat pump is warming up. Hello there."], ["Good night! Doors are locked."]]
    for n, sentences in enumerate(corpora):
        teacher_data.build_cache(state, sentences, tmp_path / f"cache{n}")
    cached = [p for n in range(2) for p in teacher_data.cached_paths(tmp_path / f"cache{n}")]
    assert len(cached) == 4
    for first in (None, 3):
        made = teacher_pairs.from_teacher(state, corpora, first=first)
        assert made.digest() == teacher_pairs.from_cache(cached[:first]).digest()
        assert len(made.ids) == (first or 4)
    with pytest.raises(ValueError, match="expected a corpus named one of main, wide; got 'big'"):
        teacher_data.corpus_sentences("big")


@pytest.mark.slow
def test_a_pack_made_from_the_corpus_is_kept_for_the_same_request(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A training recipe remakes its pack on every run: what the teacher made for the same request is kept."""
    from tests.voicefix import provisioned_state_dir

    corpora = {"main": ["The heat pump is warming up. Hello there."], "wide": ["Good night!"]}
    monkeypatch.setattr(teacher_data, "corpus_sentences", lambda name, size=None: corpora[name])
    out = tmp_path / "pack.npz"
    args = ["--out", str(out), "--corpus", "wide", "--corpus", "main", "--state-dir", str(provisioned_state_dir())]
    teacher_pairs.main(args)
    made = out.stat().st_mtime_ns
    assert teacher_pairs.made_by(out) == "corpus wide + main, first None" and len(teacher_pairs.load(out).ids) == 3
    teacher_pairs.main(args)
    assert out.stat().st_mtime_ns == made  # kept
    teacher_pairs.main([*args, "--first", "2"])  # another request: made again
    assert teacher_pairs.made_by(out) == "corpus wide + main, first 2" and len(teacher_pairs.load(out).ids) == 2
    assert teacher_pairs.made_by(tmp_path / "none.npz") is None
