# The README's two commands: `make demo` and `make test`. Both create .venv and install
# what they need on first use; nothing else is required on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= out

.PHONY: install lint test test-fast triton-env demo bench models export-models eval-models road-model eval-road-model instance-data instance-model-stage1 instance-model-stage2 instance-model-stage3 instance-model-stage4 instance-model eval-instance-model clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[torch,test,fleet,triton]'
	@# PyGObject builds from source against the system's GObject introspection and cairo
	@# (Debian: libgirepository1.0-dev libcairo2-dev, installed by .ci/run). Without them the
	@# GStreamer sources and sinks are unavailable and their tests skip with a reason.
	@if pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then \
		$(PY) -m pip install -q 'pygobject<3.51'; \
	else \
		echo "note: GObject introspection/cairo headers missing; GStreamer support not installed (see docs/running.md, GStreamer)"; \
	fi
	@touch $(STAMP)

install: $(STAMP)

# Lint: ruff (rules and line length in pyproject.toml) and mypy on the runtime's stream room.
# mypy cannot follow setuptools' editable finder, so it reads the segstream.* namespace from a
# view of symlinks under build/mypy (the rooms at the repository root, as pyproject.toml maps them).
MYPY_VIEW := build/mypy
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@rm -rf $(MYPY_VIEW) && mkdir -p $(MYPY_VIEW)/segstream
	@for f in segstream/*.py; do ln -s ../../../$$f $(MYPY_VIEW)/segstream/; done
	@for r in stream pipelines models export; do ln -s ../../../$$r $(MYPY_VIEW)/segstream/$$r; done
	MYPYPATH=$(MYPY_VIEW) $(PY) -m mypy -p segstream.stream -p segstream.pipelines.tasks

test: install lint
	$(PY) -m pytest -q --durations=15

# The fast lane (< 2 min on 2 cores): every test that needs no torch (stream, pipelines, CLI
# errors, architecture) plus the cheap torch modules, nothing marked slow. tests/conftest.py
# applies needs_torch/cheap/slow and does not even import the deselected torch modules.
test-fast: install
	$(PY) -m pytest -q -m "not slow and (cheap or not needs_torch)"

# A real local tritonserver (the one inside nvidia-pytriton: Python backend, CPU) in its own
# environment .triton-venv (numpy < 2), for the opt-in Triton tests: SEGSTREAM_TRITON=1 make test.
triton-env: install
	$(PY) bench/triton_server.py setup

demo: install
	$(PY) -m segstream demo --out $(OUT)/demo

# The embedded models in weights/ (already in the repository; this rebuilds them from scratch
# on the CPU: generated scenes, training, export). See docs/embedded-models.md.
DATA ?= data
models: install
	$(PY) -m segstream generate --out $(DATA)/semantic_train --kind images --count 160 --width 384 --height 216 --seed 7
	OMP_NUM_THREADS=1 $(PY) -m segstream train --model deeplab_tiny --images $(DATA)/semantic_train/images \
		--labels $(DATA)/semantic_train/labels --input-size 192x320 --iters 480 --batch-size 8 --lr 0.05 \
		--seed 0 --out $(DATA)/deeplab_tiny_stage1.pth
	$(PY) -m segstream generate --out $(DATA)/semantic_train2 --kind images --count 800 --width 384 --height 216 --seed 11
	OMP_NUM_THREADS=1 $(PY) -m segstream train --model deeplab_tiny --weights $(DATA)/deeplab_tiny_stage1.pth \
		--images $(DATA)/semantic_train2/images --labels $(DATA)/semantic_train2/labels --input-size 192x320 \
		--iters 4000 --batch-size 8 --lr 0.02 --seed 3 --out $(DATA)/deeplab_tiny_stage2.pth
	OMP_NUM_THREADS=2 $(PY) -m segstream train --model deeplab_tiny --weights $(DATA)/deeplab_tiny_stage2.pth \
		--images $(DATA)/semantic_train2/images --labels $(DATA)/semantic_train2/labels --input-size 192x320 \
		--iters 1500 --batch-size 8 --lr 0.01 --seed 5 --class-weights balanced --out $(DATA)/deeplab_tiny_stage3.pth
	@# Stage 4: the square root of those weights; full ones left rare classes over-predicted.
	OMP_NUM_THREADS=1 $(PY) -m segstream train --model deeplab_tiny --weights $(DATA)/deeplab_tiny_stage3.pth \
		--images $(DATA)/semantic_train2/images --labels $(DATA)/semantic_train2/labels --input-size 192x320 \
		--iters 3000 --batch-size 8 --lr 0.01 --seed 8 --class-weights balanced-sqrt --out $(DATA)/deeplab_tiny_stage4.pth
	@# Stage 5: scenes rendered at 512x288 and crops of 256x448, for a model run at 288x512 (small
	@# classes were 1-3 px wide at 216x384).
	$(PY) -m segstream generate --out $(DATA)/semantic_train3 --kind images --count 800 --width 512 --height 288 --seed 51
	OMP_NUM_THREADS=1 $(PY) -m segstream train --model deeplab_tiny --weights $(DATA)/deeplab_tiny_stage4.pth \
		--images $(DATA)/semantic_train3/images --labels $(DATA)/semantic_train3/labels --input-size 256x448 \
		--iters 2000 --batch-size 8 --lr 0.01 --seed 9 --class-weights balanced-sqrt --out $(DATA)/deeplab_tiny_stage5.pth
	@# Stage 6: 640x360 scenes, crops of 288x512, for a model run at 360x640.
	$(PY) -m segstream generate --out $(DATA)/semantic_train4 --kind images --count 800 --width 640 --height 360 --seed 71
	OMP_NUM_THREADS=1 $(PY) -m segstream train --model deeplab_tiny --weights $(DATA)/deeplab_tiny_stage5.pth \
		--images $(DATA)/semantic_train4/images --labels $(DATA)/semantic_train4/labels --input-size 288x512 \
		--iters 1200 --batch-size 8 --lr 0.005 --seed 10 --class-weights balanced-sqrt --out $(DATA)/deeplab_tiny_stage6.pth
	@# Per-class logit offsets for mIoU, tuned on a separate set (seed 3), kept in the classifier bias.
	$(PY) -m segstream generate --out $(DATA)/synth_tune --kind images --count 100 --width 640 --height 360 --seed 3
	$(PY) bench/class_bias_calibration.py --model deeplab_tiny --weights $(DATA)/deeplab_tiny_stage6.pth \
		--input-size 360x640 --images $(DATA)/synth_tune/images --labels $(DATA)/synth_tune/labels \
		--write weights/deeplab_tiny_synthetic.pth
	$(PY) -m segstream generate --out $(DATA)/synth_train --kind images --count 800 --width 640 --height 360 --seed 1
	$(PY) -m segstream train --model yolact_tiny --annotations $(DATA)/synth_train/instances.json --images $(DATA)/synth_train \
		--input-size 320 --iters 700 --batch-size 6 --optimizer adam --lr 0.001 --seed 0 \
		--out $(DATA)/yolact_tiny_stage1.pth
	$(PY) -m segstream train --model yolact_tiny --weights $(DATA)/yolact_tiny_stage1.pth \
		--annotations $(DATA)/synth_train/instances.json --images $(DATA)/synth_train \
		--input-size 320 --iters 800 --batch-size 6 --optimizer adam --lr 0.001 --seed 1 \
		--out $(DATA)/yolact_tiny_stage2.pth
	$(PY) -m segstream train --model yolact_tiny --weights $(DATA)/yolact_tiny_stage2.pth \
		--annotations $(DATA)/synth_train/instances.json --images $(DATA)/synth_train \
		--input-size 320 --iters 1000 --batch-size 6 --optimizer adam --lr 0.0005 --seed 2 \
		--out $(DATA)/yolact_tiny_stage3.pth
	@# Stage 4: 512 px input and ratio-shaped anchors with a tall 1:4 one for pedestrians (the
	@# square ones reach none of them); same anchor count, so every tensor of stage 3 carries over.
	OMP_NUM_THREADS=2 $(PY) -m segstream train --model yolact_tiny --weights $(DATA)/yolact_tiny_stage3.pth \
		--annotations $(DATA)/synth_train/instances.json --images $(DATA)/synth_train \
		--input-size 512 --iters 2500 --batch-size 6 --optimizer adam --lr 0.001 --seed 4 \
		--aspect-ratios 1,0.5,0.25 --square-anchors off --out $(DATA)/yolact_tiny_stage4.pth
	@# Stage 5: 1000 fresh scenes; the input size and anchors carry over from stage 4.
	$(PY) -m segstream generate --out $(DATA)/synth_train2 --kind images --count 1000 --width 640 --height 360 --seed 21
	OMP_NUM_THREADS=2 $(PY) -m segstream train --model yolact_tiny --weights $(DATA)/yolact_tiny_stage4.pth \
		--annotations $(DATA)/synth_train2/instances.json --images $(DATA)/synth_train2 \
		--iters 1600 --batch-size 6 --optimizer adam --lr 0.0005 --seed 5 --out $(DATA)/yolact_tiny_stage5.pth
	@# Stage 6: another 1000 fresh scenes.
	$(PY) -m segstream generate --out $(DATA)/synth_train3 --kind images --count 1000 --width 640 --height 360 --seed 31
	OMP_NUM_THREADS=2 $(PY) -m segstream train --model yolact_tiny --weights $(DATA)/yolact_tiny_stage5.pth \
		--annotations $(DATA)/synth_train3/instances.json --images $(DATA)/synth_train3 \
		--iters 1600 --batch-size 6 --optimizer adam --lr 0.0005 --seed 6 --out $(DATA)/yolact_tiny_stage6.pth
	@# Stage 7: soft mask targets (each prototype cell's covered fraction), 1000 fresh scenes.
	$(PY) -m segstream generate --out $(DATA)/synth_train4 --kind images --count 1000 --width 640 --height 360 --seed 41
	OMP_NUM_THREADS=1 $(PY) -m segstream train --model yolact_tiny --weights $(DATA)/yolact_tiny_stage6.pth \
		--annotations $(DATA)/synth_train4/instances.json --images $(DATA)/synth_train4 --mask-targets soft \
		--iters 1600 --batch-size 6 --optimizer adam --lr 0.0005 --seed 7 --out $(DATA)/yolact_tiny_stage7.pth
	@# Stage 8: stride-4 backbone features added to the prototypes, 1000 fresh scenes.
	$(PY) -m segstream generate --out $(DATA)/synth_train5 --kind images --count 1000 --width 640 --height 360 --seed 61
	OMP_NUM_THREADS=1 $(PY) -m segstream train --model yolact_tiny --weights $(DATA)/yolact_tiny_stage7.pth \
		--annotations $(DATA)/synth_train5/instances.json --images $(DATA)/synth_train5 --proto-skip on \
		--iters 1200 --batch-size 6 --optimizer adam --lr 0.0005 --seed 8 --out $(DATA)/yolact_tiny_stage8.pth
	@# The mask threshold: the best mask AP50 on the tuning set (seed 3, made above), not on the held-out one (seed 2).
	$(PY) bench/mask_threshold_sweep.py --model yolact_tiny --weights $(DATA)/yolact_tiny_stage8.pth --backend torch \
		--annotations $(DATA)/synth_tune/instances.json --images $(DATA)/synth_tune \
		--thresholds 0.25,0.3,0.35,0.4,0.45,0.5 --write weights/yolact_tiny_synthetic.pth
	$(MAKE) export-models

export-models: install
	$(PY) -m segstream export --model deeplab_tiny --weights weights/deeplab_tiny_synthetic.pth --dynamic \
		--input-size 360x640 --out weights/deeplab_tiny_synthetic.onnx
	$(PY) -m segstream export --model yolact_tiny --weights weights/yolact_tiny_synthetic.pth \
		--out weights/yolact_tiny_synthetic.onnx

# Accuracy of the embedded models on held-out generated scenes, through torch and ONNX Runtime.
eval-models: install
	$(PY) -m segstream generate --out $(DATA)/synth_val --kind images --count 100 --width 640 --height 360 --seed 2
	$(PY) -m segstream eval --model yolact_tiny --weights weights/yolact_tiny_synthetic.pth \
		--annotations $(DATA)/synth_val/instances.json --images $(DATA)/synth_val --json $(OUT)/eval_yolact_torch.json
	$(PY) -m segstream eval --model yolact_tiny --weights weights/yolact_tiny_synthetic.onnx --backend onnxruntime \
		--annotations $(DATA)/synth_val/instances.json --images $(DATA)/synth_val --json $(OUT)/eval_yolact_onnx.json
	$(PY) -m segstream eval --model deeplab_tiny --weights weights/deeplab_tiny_synthetic.pth --input-size 360x640 \
		--images $(DATA)/synth_val/images --labels $(DATA)/synth_val/labels --json $(OUT)/eval_deeplab_torch.json
	$(PY) -m segstream eval --model deeplab_tiny --weights weights/deeplab_tiny_synthetic.onnx --backend onnxruntime \
		--images $(DATA)/synth_val/images --labels $(DATA)/synth_val/labels --json $(OUT)/eval_deeplab_onnx.json

# The road model (weights/deeplabv3plus_lite0_camvid.*): DeepLabV3+ on ImageNet EfficientNet-Lite0,
# trained on CamVid (CC BY-NC 4.0: research and personal use). One core, about 1 h 50 min here
# (3.5-4 s per step); ROAD_STOP=N stops at step N and ROAD_RESUME=1 continues a stopped run
# exactly. The best step on CamVid val is kept.
CAMVID ?= ../shared/data/camvid
ROAD_OUT ?= $(DATA)/road/lite0_camvid.pth
road-model: install
	OMP_NUM_THREADS=1 $(PY) -m segstream train --model deeplabv3plus_lite0 \
		--images $(CAMVID)/train --labels $(CAMVID)/trainannot --layout camvid \
		--val-images $(CAMVID)/val --val-labels $(CAMVID)/valannot --eval-every 200 \
		--iters 1800 --batch-size 8 --input-size 256x256 --lr 0.01 --weight-decay 4e-5 \
		--scale-range 0.5,2.0 --jitter color --class-weights balanced-sqrt --warmup-iters 100 --seed 0 --threads 1 \
		--checkpoint-every 50 --out $(ROAD_OUT) $(if $(ROAD_STOP),--stop-at $(ROAD_STOP)) \
		$(if $(ROAD_RESUME),--resume $(basename $(ROAD_OUT)).last.pth)
	cp $(ROAD_OUT) weights/deeplabv3plus_lite0_camvid.pth
	$(PY) -m segstream export --model deeplabv3plus_lite0 --weights weights/deeplabv3plus_lite0_camvid.pth --dynamic \
		--out weights/deeplabv3plus_lite0_camvid.onnx

# The road instance model (see docs/embedded-models.md): CamVid components as COCO instances, then
# yolact_lite0 from ImageNet Lite0 in three stages, each from the previous stage's best checkpoint.
# `make instance-model` runs them as they were run: stage 1 stopped at 1,250 of a 4,000-step
# schedule, stage 2 (a fresh schedule) at 600 of 2,400, stage 3 (anchors 1, 1/2, 1/4 at 480 px)
# INST3_STOP steps of 1,100, stage 4 (a fresh 600-step schedule, 2 threads) INST4_STOP steps; then the
# best checkpoint is exported.
INST_OUT ?= $(DATA)/inst/yolact_lite0_s1.pth
INST2_OUT ?= $(DATA)/inst2/yolact_lite0_s2.pth
INST3_OUT ?= $(DATA)/inst3/yolact_lite0_s3.pth
INST3_STOP ?= 900
INST4_OUT ?= $(DATA)/inst4/yolact_lite0_s4.pth
INST4_STOP ?= 400
INST_TRAIN = OMP_NUM_THREADS=1 $(PY) -m segstream train --model yolact_lite0 \
		--annotations $(DATA)/inst/train.json --images $(CAMVID)/train \
		--val-annotations $(DATA)/inst/val.json --val-images $(CAMVID)/val \
		--batch-size 4 --optimizer adam --lr 0.0005 --checkpoint-every 50
instance-data: install
	$(PY) -m segstream convert camvid-instances --images $(CAMVID)/train --labels $(CAMVID)/trainannot --out $(DATA)/inst/train.json
	$(PY) -m segstream convert camvid-instances --images $(CAMVID)/val --labels $(CAMVID)/valannot --out $(DATA)/inst/val.json
instance-model-stage1: instance-data
	OMP_NUM_THREADS=1 $(PY) -m segstream train --model yolact_lite0 \
		--annotations $(DATA)/inst/train.json --images $(CAMVID)/train \
		--val-annotations $(DATA)/inst/val.json --val-images $(CAMVID)/val --eval-every 250 \
		--input-size 384 --iters 4000 --batch-size 4 --optimizer adam --lr 0.0005 --seed 0 --checkpoint-every 50 \
		--out $(INST_OUT) $(if $(INST_STOP),--stop-at $(INST_STOP)) $(if $(INST_RESUME),--resume $(basename $(INST_OUT)).last.pth)
instance-model-stage2:
	$(INST_TRAIN) --weights $(INST_OUT) --eval-every 200 --input-size 384 --iters 2400 --seed 1 \
		--out $(INST2_OUT) --stop-at 600
instance-model-stage3:
	$(INST_TRAIN) --weights $(INST2_OUT) --aspect-ratios 1,0.5,0.25 --square-anchors off --eval-every 150 \
		--input-size 480 --iters 1100 --seed 2 --out $(INST3_OUT) $(if $(INST3_STOP),--stop-at $(INST3_STOP))
instance-model-stage4:
	OMP_NUM_THREADS=2 $(PY) -m segstream train --model yolact_lite0 --weights $(INST3_OUT) \
		--annotations $(DATA)/inst/train.json --images $(CAMVID)/train \
		--val-annotations $(DATA)/inst/val.json --val-images $(CAMVID)/val --eval-every 100 \
		--input-size 480 --iters 600 --batch-size 4 --optimizer adam --lr 0.0003 --seed 3 --checkpoint-every 50 \
		--out $(INST4_OUT) $(if $(INST4_STOP),--stop-at $(INST4_STOP))
instance-model:
	$(MAKE) instance-model-stage1 INST_STOP=1250
	$(MAKE) instance-model-stage2
	$(MAKE) instance-model-stage3
	$(MAKE) instance-model-stage4
	$(PY) -c "import torch; s = torch.load('$(INST4_OUT)', weights_only=True); sd = {k: (v.half() if v.is_floating_point() else v) for k, v in s['state_dict'].items()}; torch.save({'state_dict': sd, 'segstream': s['segstream']}, 'weights/yolact_lite0_camvid.pth')"
	$(PY) -m segstream export --model yolact_lite0 --weights weights/yolact_lite0_camvid.pth --out weights/yolact_lite0_camvid.onnx
# CamVid val instances (car, person, cyclist), mask and box AP, through ONNX Runtime.
eval-instance-model: install
	$(PY) -m segstream eval --model yolact_lite0 --weights weights/yolact_lite0_camvid.onnx --backend onnxruntime \
		--annotations $(DATA)/inst/val.json --images $(CAMVID)/val --json $(OUT)/eval_instances_onnx.json

# CamVid val, 11 classes, through ONNX Runtime and torch (the test split is held back).
eval-road-model: install
	$(PY) -m segstream eval --model deeplabv3plus_lite0 --weights weights/deeplabv3plus_lite0_camvid.onnx \
		--backend onnxruntime --images $(CAMVID)/val --labels $(CAMVID)/valannot --layout camvid \
		--json $(OUT)/eval_road_onnx.json
	$(PY) -m segstream eval --model deeplabv3plus_lite0 --weights weights/deeplabv3plus_lite0_camvid.pth \
		--images $(CAMVID)/val --labels $(CAMVID)/valannot --layout camvid --json $(OUT)/eval_road_torch.json

bench: install
	$(PY) -m segstream bench pipeline --json $(OUT)/bench_pipeline.json

clean:
	rm -rf $(OUT) .pytest_cache
