# jetvox: `make demo` hears it speak, `make test` proves it. Both set up what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JETVOX := $(VENV)/bin/jetvox
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast provision bench bench-mqtt wyoming-bench soak typecheck verify-device fp16-evidence install teacher train-deps teacher-data teacher-data-wide distill distill-gan distill-hifi distill-wide distill-joint distill-gpu distill-3m distill-3r distill-3w distill-3x distill-3v distill-hybrid distill-3h ship-3h distill-soup clean help

help:
	@echo "make demo   - set up, provision the default voice, speak a sample (demo.wav)"
	@echo "make test   - set up, run the whole test suite"
	@echo "make bench  - jetvox bench beside piper-tts"
	@echo "make bench-mqtt - MQTT publish to first PCM chunk through a private broker"
	@echo "make wyoming-bench - wyoming-bench: jetvox's Wyoming server beside wyoming-piper, both modes"
	@echo "make soak   - an hour of mixed traffic with broker and daemon kills (SOAK_MINUTES=60); not in CI"

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/apt-deps.sh Makefile
	./scripts/apt-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# mypy cannot follow the editable install's import hook: give it the installed names as links.
	mkdir -p $(VENV)/mypy-path/jetvox
	for d in device engines provisioning; do ln -sfn ../../../$$d $(VENV)/mypy-path/jetvox/$$d; done
	# The published tensorrt-stubs pin the real tensorrt wheel (NVIDIA's index only) and, installed, make
	# `import tensorrt` an empty package: keep them aside, where tests check stubs/tensorrt against them.
	$(PY) -m pip install -q --no-deps --upgrade --target $(VENV)/tensorrt-stubs 'tensorrt-stubs==10.13.0.35.1'
	# The distillation tests need PyTorch; take a CPU build only if one is at hand offline (a plain
	# `pip install torch` would pull gigabytes of CUDA wheels). Without it those tests are skipped.
	if $(PY) -m pip download -q --no-index --no-deps -d $(VENV)/.torch-probe 'torch==2.13.0' >/dev/null 2>&1; then \
	  rm -rf $(VENV)/.torch-probe; $(PY) -m pip install -q 'torch==2.13.0'; \
	else echo "setup: no offline CPU torch wheel; distillation tests will be skipped"; fi
	touch $@

provision: setup
	$(JETVOX) provision

# The real path: a private mosquitto, `jetvox serve`, a sensor reading published, the PCM collected.
demo: provision
	$(PY) -m devtools.demo --out demo.wav

# Train the distilled students from nothing (CPU is enough; see provisioning/distill/). Gated: a pair that
# fails the quality gate is parked in provisioning/distill/results/, not shipped as the joe-fast voice.
DISTILL_LIMIT ?= --limit 1395
TRAIN_DEPS := 'torch==2.13.0' 'tqdm>=4.66' 'wonderwords==3.0.1'
TEACHER_VOICE := en_US-joe-medium
# The teacher's split models (`jetvox provision` alone provisions the default voice only).
teacher: setup
	$(JETVOX) provision --voice $(TEACHER_VOICE)
# The whole corpus (4,000 sentences) through the teacher, on both cores; cached utterances are kept, so a rerun
# on a machine that has them costs seconds, and one on a fresh machine rebuilds what the later stages train on.
# The training extra (torch for the CPU, tqdm, wonderwords for the wide corpus) beside the teacher.
train-deps: teacher
	$(PY) -m pip install -q $(TRAIN_DEPS)
teacher-data: train-deps
	$(PY) -m jetvox.provisioning.distill.teacher_data --shard 0 --shards 2 & pid=$$!; \
	  $(PY) -m jetvox.provisioning.distill.teacher_data --shard 1 --shards 2 && wait $$pid
distill: provision teacher
	$(PY) -m pip install -q $(TRAIN_DEPS)
	# stage 1: the first 1,395 utterances of the corpus through the teacher; two learning-rate phases each
	$(PY) -m jetvox.provisioning.distill.teacher_data --shard 0 --shards 2 $(DISTILL_LIMIT) & pid=$$!; \
	  $(PY) -m jetvox.provisioning.distill.teacher_data --shard 1 --shards 2 $(DISTILL_LIMIT) && wait $$pid
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --steps 6400 --threads 1 --resume
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --steps 11400 --threads 1 --resume --extend-lr 5e-4
	$(PY) -m jetvox.provisioning.distill.train --what acoustic --steps 5000 --batch 8 --threads 1 --resume
	$(PY) -m jetvox.provisioning.distill.train --what acoustic --steps 10000 --batch 8 --threads 1 --resume --extend-lr 5e-4
	# stage 2: the whole corpus (4,000 sentences) through the teacher; one more phase each
	$(MAKE) teacher-data
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --steps 16400 --threads 1 --resume --extend-lr 3e-4
	$(PY) -m jetvox.provisioning.distill.train --what acoustic --steps 15000 --batch 8 --threads 1 --resume --extend-lr 3e-4
	$(MAKE) distill-gan GAN_FROM=$(STATE)/distill/runs/vocoder/ckpt.pt GAN_RUN=$(STATE)/distill/runs/vocoder-gan \
	  GAN_ACOUSTIC=$(STATE)/distill/runs/acoustic/ckpt.pt
	$(PY) -m jetvox.provisioning.distill.ship

# Stage 3 (issue 10): the vocoder trained on against multi-period and multi-resolution discriminators with
# feature matching, from the stage-2 checkpoint. Runs of at most two hours (checkpointed): repeat
# `make distill-gan` until it reports the target step; each run resumes where the last stopped.
# The run lives in the repository (results/vocoder-gan: checkpoint with both optimisers and the
# discriminators, loss log), so a session that ends mid-way is resumed by the next, wherever it runs.
STATE ?= $(or $(JETVOX_STATE_DIR),$(HOME)/.local/share/jetvox)
GAN_FROM ?= provisioning/distill/results/vocoder-ckpt.pt
GAN_RUN ?= provisioning/distill/results/vocoder-gan
GAN_STEPS ?= 40400
# 3a to step 28,753: the spectral losses (mel, multi-resolution STFT, complex spectrum, waveform) beside the
# discriminators. 3b from there: no phase-regressing terms (complex, waveform), mel weighted 2.5x, and each
# ConvNeXt MLP widened 3x -> 6x dim (new units start silent; 0.40 GMAC per audio second, budget 0.49).
GAN_SWITCH ?= 28753
GAN_3B := --gan-set complex_weight=0 --gan-set wav_weight=0 --gan-set mel_weight=2.5 --widen-mult 6
# 3c from step 36,088 to 41,000: 80% of the segments are vocoded from the acoustic student's teacher-forced
# latents (the smoother ones the vocoder gets in use) against the teacher's audio, as HiFi-GAN fine-tunes on
# ground-truth-aligned mels; a new learning-rate phase (peak 1e-4) for it.
GAN_3C_FROM ?= 36088
GAN_3C_STEPS ?= 41000
GAN_ACOUSTIC ?= provisioning/distill/results/acoustic-ckpt.pt
GAN_ALIGNED := --aligned-fraction 0.8 --aligned-acoustic $(GAN_ACOUSTIC)
GAN_3C := $(GAN_ALIGNED) --phase-lr 1e-4
# 3d from step 41,000 to 47,000: one more ConvNeXt block after the four (a 3-frame kernel, so the receptive field,
# 16 frames, still fits the streaming overlap; it starts silent), a new phase (peak 2e-4); 0.465 GMAC per audio
# second (budget 0.49).
GAN_3D_STEPS ?= 47000
GAN_3D := $(GAN_ALIGNED) --deepen 1 --phase-lr 2e-4
# 3e from step 47,000 to 48,400: a last phase (peak 1e-4) that keeps an exponential moving average of the
# weights (decay 0.998, about the last five hundred steps); the average is what gets exported and evaluated.
GAN_3E_STEPS ?= 48400
GAN_3E := $(GAN_ALIGNED) --phase-lr 1e-4 --ema 0.998
# torch threads: 1 leaves a core for other work; 2 (GAN_THREADS=2) is faster on two otherwise idle cores.
GAN_THREADS ?= 1
distill-gan: teacher-data
	test -f $(GAN_RUN)/ckpt.pt || { mkdir -p $(GAN_RUN) && cp $(GAN_FROM) $(GAN_RUN)/ckpt.pt; }
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --out $(GAN_RUN) --steps $(GAN_STEPS) --threads $(GAN_THREADS) \
	  --resume --extend-lr 2e-4 --adversarial --max-minutes 120 --stop-at $(GAN_SWITCH)
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --out $(GAN_RUN) --steps $(GAN_STEPS) --threads $(GAN_THREADS) \
	  --resume --adversarial --max-minutes 120 --from-step $(GAN_SWITCH) --stop-at $(GAN_3C_FROM) $(GAN_3B)
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --out $(GAN_RUN) --steps $(GAN_3C_STEPS) --threads $(GAN_THREADS) \
	  --resume --adversarial --max-minutes 120 --from-step $(GAN_3C_FROM) --stop-at $(GAN_3C_STEPS) $(GAN_3C)
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --out $(GAN_RUN) --steps $(GAN_3D_STEPS) --threads $(GAN_THREADS) \
	  --resume --adversarial --max-minutes 120 --from-step $(GAN_3C_STEPS) --stop-at $(GAN_3D_STEPS) $(GAN_3D)
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --out $(GAN_RUN) --steps $(GAN_3E_STEPS) --threads $(GAN_THREADS) \
	  --resume --adversarial --max-minutes 120 --from-step $(GAN_3D_STEPS) $(GAN_3E)

# Stage 3h (issue 10), the time-domain student (provisioning/distill/hifigan.py): the teacher's own HiFi-GAN
# decoder cut to HIFI_CHANNELS per stage, keeping the channels that carry the most energy, and started from the
# teacher's weights on them (0.36 GMAC per audio second, budget 0.49; channel counts in multiples of 8 run fastest
# in ONNX Runtime's CPU kernels, so the last stage keeps 8 of 32). To HIFI_SWITCH: the reconstruction losses plus
# the distance of each stage's output to the teacher's on the kept channels; from there also against the
# discriminators. Runs of at most two hours (checkpointed), resumed like distill-gan.
HIFI_RUN ?= provisioning/distill/results/vocoder-hifi
HIFI_CHANNELS ?= 128,64,32,8
HIFI_SWITCH ?= 2500
HIFI_STEPS ?= 20000
distill-hifi: teacher-data
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --out $(HIFI_RUN) --steps $(HIFI_STEPS) --batch 8 --lr 3e-4 \
	  --threads $(GAN_THREADS) --ckpt-every 250 --resume --prune-teacher $(HIFI_CHANNELS) --stage-weight 1.0 \
	  --max-minutes 120 --stop-at $(HIFI_SWITCH)
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --out $(HIFI_RUN) --steps $(HIFI_STEPS) --threads $(GAN_THREADS) \
	  --ckpt-every 250 --resume --adversarial --max-minutes 120 --from-step $(HIFI_SWITCH)

# Stage 4 (issue 10): the acoustic student on wide-vocabulary sentences beside the corpus (wide_corpus.py). The
# corpus speaks about 730 distinct words; on the 26 benchmark sentences the student's teacher-forced latents are
# 0.248 (L1) from the teacher's against 0.170 on its training ones, and the teacher's own vocoder loses 0.07 P.808
# on them. Fine-tuned from the stage-2 checkpoint with a new learning-rate phase; runs of at most two hours,
# resumed like distill-gan. One teacher process (its noise-0/noisy audio alternation follows the process's order).
STATE_CACHE = $(STATE)/distill/teacher-v1
ACOUSTIC_FROM ?= provisioning/distill/results/acoustic-ckpt.pt
ACOUSTIC_RUN ?= provisioning/distill/results/acoustic-wide
ACOUSTIC_STEPS ?= 30000
# The wide-vocabulary sentences through the teacher, in their own cache ($(STATE_CACHE)-wide); kept like teacher-data's.
teacher-data-wide: teacher-data
	$(PY) -m jetvox.provisioning.distill.teacher_data --wide --threads 2
distill-wide: teacher-data-wide
	test -f $(ACOUSTIC_RUN)/ckpt.pt || { mkdir -p $(ACOUSTIC_RUN) && cp $(ACOUSTIC_FROM) $(ACOUSTIC_RUN)/ckpt.pt; }
	$(PY) -m jetvox.provisioning.distill.train --what acoustic --out $(ACOUSTIC_RUN) --steps $(ACOUSTIC_STEPS) \
	  --batch 8 --threads 1 --resume --max-minutes 120 --cache $(STATE_CACHE) --cache $(STATE_CACHE)-wide --phase-lr 3e-4

# Stage 5 (issue 10): both students fine-tuned together (joint.py): the acoustic student's teacher-forced latents
# through the vocoder, scored on the audio against the teacher's with the adversarial losses, so the acoustic
# student learns what the vocoder needs rather than the teacher's latents alone (their L1 stays in its loss,
# weighted 100). From the stage-3c vocoder (the best yet; results/vocoder-3c-ckpt.pt holds it, as stage 3d goes on
# in the same run) and the end of stage 4 (it waits for them); resumed like distill-gan.
JOINT_RUN ?= provisioning/distill/results/joint
JOINT_STEPS ?= 2000
JOINT_VOCODER ?= provisioning/distill/results/vocoder-3c-ckpt.pt
distill-joint: teacher-data
	$(PY) -m jetvox.provisioning.distill.joint --out $(JOINT_RUN) --steps $(JOINT_STEPS) --threads 1 --max-minutes 120 \
	  --vocoder-from $(JOINT_VOCODER) --vocoder-step $(GAN_3C_STEPS) \
	  --acoustic-from $(ACOUSTIC_RUN)/ckpt.pt --acoustic-step $(ACOUSTIC_STEPS) \
	  --cache $(STATE_CACHE) --cache $(STATE_CACHE)-wide

# Stage 6 (issue 10): the acoustic student as the uniform weight average ("model soup", soup.py) of its three
# checkpoints of one lineage: stage 2 (15,000), stage 4 (30,000, fine-tuned from it) and stage 5 (32,000, from
# that). It trains nothing (seconds on the CPU). Gated and passed in the thirtieth session, not shipped yet (README).
SOUP_RUN ?= provisioning/distill/results/acoustic-soup
distill-soup: setup
	$(PY) -m pip install -q $(TRAIN_DEPS)
	$(PY) -m jetvox.provisioning.distill.soup --out $(SOUP_RUN) $(ACOUSTIC_FROM) $(ACOUSTIC_RUN)/ckpt.pt \
	  $(JOINT_RUN)/acoustic/ckpt.pt

# Stage 3g (issue 10), on a CUDA GPU (never in CI): the stage-3e vocoder (its averaged weights, a fresh optimiser)
# trained on against pairs made on the GPU at the start of each run (teacher_pairs.py): the acoustic student's
# teacher-forced latents and the teacher decoder's audio of exactly those latents, so the vocoder learns a function
# of its input (the cache pairs the teacher's audio with the teacher's own latents, which the student's only
# approximate). Only the utterances' ids and durations travel (0.3 MB). Batch 128; ran on an H200 at about 11
# steps/s (5 with three runs sharing it); resumed like distill-gan. GPU_DEVICE=cpu runs it here, slowly.
GPU_RUN ?= provisioning/distill/results/vocoder-3g
GPU_STEPS ?= 58400
GPU_DEVICE ?= cuda
GPU_PACK ?= $(STATE)/distill/utterances-v1.npz
# The pack is (re)made first; then a resumed adversarial run on pairs made on GPU_DEVICE (both GPU stages).
# PACK_FIRST=N packs only the first N utterances (a CPU's share); PACK_CORPORA names the corpora to pack, in
# order, their durations from the teacher's acoustic model run then (about 5 utterances a second on one core; no
# teacher cache, which a fresh machine takes about an hour to make; on one machine the same pack as the caches');
# a pack made for the same request is kept. TRAIN_THREADS and TRAIN_MINUTES bound each run.
PACK_FIRST ?=
PACK_CORPORA ?= main
TRAIN_THREADS ?= 4
TRAIN_MINUTES ?= 120
GPU_TRAIN = $(PY) -m jetvox.provisioning.distill.teacher_pairs --out $(GPU_PACK) $(if $(PACK_FIRST),--first $(PACK_FIRST)) \
  $(foreach c,$(PACK_CORPORA),--corpus $(c)) --threads $(TRAIN_THREADS) && \
  $(PY) -m jetvox.provisioning.distill.train --what vocoder --resume --adversarial --ema 0.999 \
  --pairs $(GPU_PACK) $(GAN_ACOUSTIC) --device $(GPU_DEVICE) --ckpt-every 250 --max-minutes $(TRAIN_MINUTES) --threads $(TRAIN_THREADS)
distill-gpu: train-deps
	$(GPU_TRAIN) --out $(GPU_RUN) --steps $(GPU_STEPS) --start-from $(GAN_RUN)/ckpt.pt --phase-lr 2e-4 --batch 128

# Stage 3m (issue 10): the two-subframe head (stage 3s: 3g's head split by `train --subframes 2`, 2,495 CPU steps to
# 55,512) trained on at batch 128 on the H200 to 57,600, then with the fine mel term (20 ms windows, 120 bands to
# 8 kHz, weight 3) to 59,475, then on the CPU (batch 16, the first 1,000 utterances' pairs, peak 1e-4) towards
# 63,600. `make distill-3m` resumes it where it stands; on a CPU: GPU_DEVICE=cpu M3_BATCH=16.
M3_RUN ?= provisioning/distill/results/vocoder-3m
M3_STEPS ?= 63600
M3_BATCH ?= 128
distill-3m: train-deps
	$(GPU_TRAIN) --out $(M3_RUN) --steps $(M3_STEPS) --start-from provisioning/distill/results/vocoder-3s/ckpt.pt \
	  --phase-lr 1e-4 --batch $(M3_BATCH) --gan-set mel_fine_weight=3

# Stage 3r: 3m's average (63,328) with a fourth resolution discriminator, 448-sample windows and hop 112 (about
# 20 ms, the fine mel term's picture), started afresh and trained alone for 300 steps, then all of it; new phase
# peak 1e-4. On a CPU, as it ran here (2 cores): make distill-3r GPU_DEVICE=cpu R3_BATCH=16 PACK_FIRST=1000 \
#   GPU_PACK=$(STATE)/distill/utterances-1000.npz
R3_RUN ?= provisioning/distill/results/vocoder-3r
R3_STEPS ?= 68000
R3_BATCH ?= 128
distill-3r: train-deps
	$(GPU_TRAIN) --out $(R3_RUN) --steps $(R3_STEPS) --start-from $(M3_RUN)/ckpt.pt --phase-lr 1e-4 --batch $(R3_BATCH) \
	  --add-resolution 448:112 --disc-warmup 300

# Stage 3w: 3r's average (66,904) on more varied pairs: all 4,000 wide-vocabulary utterances (`teacher_data --wide`)
# and then the first 1,000 of the main cache (3r's own), 5,000 in all; new phase peak 1e-4. The CPU's recipe (2
# cores, about 20 minutes of pair making, then 78 minutes of steps); on a GPU: W3_BATCH=128 GPU_DEVICE=cuda
# TRAIN_THREADS=4 TRAIN_MINUTES=120.
W3_RUN ?= provisioning/distill/results/vocoder-3w
W3_STEPS ?= 70000
W3_BATCH ?= 16
distill-3w distill-3x distill-3v: GPU_DEVICE = cpu
distill-3w distill-3x distill-3v: GPU_PACK = $(STATE)/distill/utterances-w5000.npz
distill-3w distill-3x distill-3v: PACK_CORPORA = wide main
distill-3w distill-3x distill-3v: PACK_FIRST = 5000
distill-3w distill-3x distill-3v: TRAIN_THREADS = 2
distill-3w: TRAIN_MINUTES = 78
distill-3w: train-deps
	$(GPU_TRAIN) --out $(W3_RUN) --steps $(W3_STEPS) --start-from $(R3_RUN)/ckpt.pt --phase-lr 1e-4 --batch $(W3_BATCH)

# Stage 3x: 3w's average (69,499) with a fifth resolution discriminator, 256-sample windows and hop 64 (11.6 ms,
# finer in time than any of the four: pitch pulses within the 11.6 ms latent frame), started afresh and trained
# alone for 300 steps, then all of it, on 3w's pairs (3w's settings above); new phase peak 1e-4. On a GPU:
# X3_BATCH=128 GPU_DEVICE=cuda TRAIN_THREADS=4 TRAIN_MINUTES=120. Its first phase ended at 72,500, a second (peak
# 1e-4 again) at 76,000, a third (the same) at 79,500; a fourth (the same) runs to 83,000.
X3_RUN ?= provisioning/distill/results/vocoder-3x
X3_STEPS ?= 83000
X3_BATCH ?= 16
distill-3x: TRAIN_MINUTES = 80
distill-3x: train-deps
	$(GPU_TRAIN) --out $(X3_RUN) --steps $(X3_STEPS) --start-from $(W3_RUN)/ckpt.pt --phase-lr 1e-4 --batch $(X3_BATCH) \
	  --add-resolution 256:64 --disc-warmup 300

# Stage 3v: 3x's average (82,897, the shipped vocoder) on pairs whose latents carry the acoustic student's
# global-variance compensation (`train --pairs-variance`, variance.py), as the vocoder got them in use from the
# twenty-eighth session: the target is the teacher decoder's audio of the compensated latents. 3w's utterances and
# settings; new phase peak 1e-4. The compensation is the one in the student acoustic model joe-fast shipped until the
# thirty-eighth session (the run records its digest): taken from git, since joe-fast's acoustic model is the hybrid now.
V3_RUN ?= provisioning/distill/results/vocoder-3v
V3_STEPS ?= 86400
V3_BATCH ?= 16
V3_VARIANCE ?= $(STATE)/distill/student-acoustic-e6c74ac.onnx
$(V3_VARIANCE):
	mkdir -p $(dir $@)
	git show e6c74ac:device/voice/shipped/joe-fast/acoustic.onnx > $@.tmp && mv $@.tmp $@
distill-3v: TRAIN_MINUTES = 80
distill-3v: train-deps $(V3_VARIANCE)
	$(GPU_TRAIN) --out $(V3_RUN) --steps $(V3_STEPS) --start-from $(X3_RUN)/ckpt.pt --phase-lr 1e-4 --batch $(V3_BATCH) \
	  --pairs-variance $(V3_VARIANCE)

# The hybrid acoustic student (issue 10, thirty-fifth session; `hybrid.py`): the teacher's own text encoder (its prior
# means m_p) through a 1x1 projection into the shipped student's decoder, which is fine-tuned on the teacher's
# noise-free latents (L1 on 160-frame crops); the durations stay the student's. Data: the main and wide corpora
# through the teacher on both cores (about 10 minutes, kept in the state dir); steps: 6,000 at batch 16 on 2 threads
# (about half an hour), resumable. `hybrid export --out FILE` writes it with the teacher's interface, compensated
# and sharpened.
HYBRID_RUN ?= provisioning/distill/results/acoustic-hybrid
HYBRID_STEPS ?= 6000
distill-hybrid: train-deps
	$(PY) -m jetvox.provisioning.distill.hybrid data --shard 0 --shards 2 & pid=$$!; \
	  $(PY) -m jetvox.provisioning.distill.hybrid data --shard 1 --shards 2 && wait $$pid
	$(PY) -m jetvox.provisioning.distill.hybrid train --run $(HYBRID_RUN) --steps $(HYBRID_STEPS) --threads 2 \
	  --max-minutes 120

# Stage 3h: 3x's average (82,897, the shipped vocoder) on the hybrid's pairs: the exported hybrid's own latents
# (its durations, compensation and sharpening, as the vocoder gets them in use; `train --pairs PACK ONNX`) and the
# teacher decoder's audio of them, for 5,000 utterances of the hybrid's data (`hybrid pack`); 3w's settings, new
# phase peak 1e-4, resumable in stages of TRAIN_MINUTES. The thirty-fifth session ran it to 85,012, the thirty-sixth
# to 88,913 in a phase to 89,000, the thirty-seventh to 92,773 in a new one to 93,000 (shipped in joe-fast by the
# thirty-eighth), the thirty-eighth to 94,754 in a new one to 97,000, the thirty-ninth to its end (97,000,
# committed slim; no measurable gain over 92,773, docs/naturalness.md). At H3_STEPS the target is reached and the
# recipe trains nothing; a higher H3_STEPS opens another phase.
H3_RUN ?= provisioning/distill/results/vocoder-3h
H3_STEPS ?= 97000
H3_BATCH ?= 16
HYBRID_ONNX ?= $(STATE)/distill/hybrid-acoustic.onnx
H3_PACK ?= $(STATE)/distill/utterances-hybrid5000.npz
distill-3h: TRAIN_MINUTES = 80
distill-3h: distill-hybrid
	$(PY) -m jetvox.provisioning.distill.hybrid export --run $(HYBRID_RUN) --out $(HYBRID_ONNX)
	$(PY) -m jetvox.provisioning.distill.hybrid pack --out $(H3_PACK)
	$(PY) -m jetvox.provisioning.distill.train --what vocoder --resume --adversarial --ema 0.999 \
	  --pairs $(H3_PACK) $(HYBRID_ONNX) --device cpu --ckpt-every 250 --max-minutes $(TRAIN_MINUTES) --threads 2 \
	  --out $(H3_RUN) --steps $(H3_STEPS) --start-from $(X3_RUN)/ckpt.pt --phase-lr 1e-4 --batch $(H3_BATCH)

# The hybrid through stage 3h's vocoder, both INT8-stored, gated (`ship --hybrid-run`); SHIP_OUT=DIR writes the
# models and their record there as a trial instead of shipping them as joe-fast when they pass. The thirty-eighth
# session shipped joe-fast this way (at 3h's 92,773).
SHIP_OUT ?=
ship-3h: setup
	$(PY) -m pip install -q $(TRAIN_DEPS)
	$(PY) -m jetvox.provisioning.distill.ship --vocoder-run $(H3_RUN) --hybrid-run $(HYBRID_RUN) --int8-weights \
	  --reproduce "make distill-3h ship-3h" $(if $(SHIP_OUT),--out $(SHIP_OUT))

# On a device, as root: code and venv in /opt/jetvox, config in /etc/jetvox, systemd units enabled.
install:
	./scripts/install.sh

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: provision
	# the default voice (the distilled joe-fast) runs beside its teacher and piper-tts
	$(JETVOX) provision --voice en_US-joe-medium
	$(JETVOX) bench --wer --quality

# MQTT publish to first PCM chunk through a private mosquitto and an in-process daemon (a dev tool).
bench-mqtt: provision
	$(PY) -m devtools.bench_mqtt

# What a Home Assistant user would measure: the PyPI wyoming-bench against jetvox's Wyoming server and
# wyoming-piper (PyPI) on the packaged en_US-joe-medium, in one run, non-streaming and streaming.
WYOMING_ROUNDS ?= 5
wyoming-bench: provision
	$(PY) -m pip install -q -e '.[wyoming-bench]'
	$(PY) -m devtools.wyoming_bench --rounds $(WYOMING_ROUNDS)

# One hour (SOAK_MINUTES) of mixed MQTT traffic against `jetvox serve` on a private mosquitto, the broker and the
# daemon killed with -9 every few minutes; prints messages sent, spoken, doubled, lost and memory over time.
SOAK_MINUTES ?= 60
soak: provision
	$(PY) -m devtools.soak --minutes $(SOAK_MINUTES)

# Type-check every module (no GPU needed); also part of `make test`.
typecheck: setup
	$(PY) -m mypy

# On a Jetson: provision the engines the daemon loads, run them as it does and judge every part against
# ONNX Runtime FP32 (fails beyond the limits in provisioning/tensorrt/compare.py), then the benchmark.
# Run after `sudo make install`: the appliance's own venv (pycuda built against JetPack's CUDA), config and
# state, as its user, so the engines checked are the ones `jetvox serve` loads.
APPLIANCE := /opt/jetvox/venv/bin
APPLIANCE_ARGS := --config /etc/jetvox/jetvox.yaml --state-dir /var/lib/jetvox
verify-device:
	@test -x $(APPLIANCE)/python || { echo "verify-device: run 'sudo make install' first"; exit 2; }
	runuser -u jetvox -- $(APPLIANCE)/python -m jetvox.provisioning.tensorrt.verify_device $(APPLIANCE_ARGS)
	runuser -u jetvox -- $(APPLIANCE)/jetvox bench --wer --quality $(APPLIANCE_ARGS)

# FP16 evidence on any CPU: every model a TensorRT build consumes, run with FP16-rounded tensors, against FP32.
fp16-evidence: provision
	$(PY) -m jetvox.provisioning.tensorrt.fp16

clean:
	rm -rf $(VENV) demo.wav .pytest_cache .mypy_cache *.egg-info
