#!/usr/bin/env bash
# Every GPU measurement in one run, made to fit a short GPU lease:
# GPU-only checks, training speed of our Faster R-CNN R50-FPN against torchvision's (mixed
# precision), every family's training img/s and memory (fp32 and mixed), inference latency and
# throughput, scoring against pycocotools, the loader against the model, and the quick-start
# detector trained and evaluated on the device.
#
#   bench/gpu_suite.sh [--small] [--diagnose] [OUT_DIR]     (default OUT_DIR: runs/gpu_suite)
#
# --small shrinks every size so the whole suite runs end to end on a CPU (the tests do this).
# --diagnose adds, after everything else, runs that explain rather than report (fp32 speed, where a
# step's time goes, our models in NCHW, bf16, a compiled backbone); a few more minutes. --small
# runs those that a CPU can.
# Wheels found in .whl/ (e.g. faster-coco-eval for a machine without it) are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."

small=0
diagnose=0
out=runs/gpu_suite
for arg in "$@"; do
  case "$arg" in
    --small) small=1 ;;
    --diagnose) diagnose=1 ;;
    *) out=$arg ;;
  esac
done
mkdir -p "$out"
py=${PYTHON:-python3}

if ! "$py" -c "import faster_coco_eval, pycocotools" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/simpledet-site .whl/*.whl
  export PYTHONPATH=/tmp/simpledet-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

device=$("$py" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
"$py" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" | tee "$out/env.txt"
date -u +%Y-%m-%dT%H:%MZ >> "$out/env.txt"

if [ "$small" = 1 ]; then
  size=(--height 160 --width 224); reps=(--repeats 1 --warmup 1); iters=20; shapes=(--train 16 --val 8)
else
  size=(--height 800 --width 1216); reps=(--repeats 20 --warmup 5); iters=600; shapes=(--train 600 --val 100)
fi
amp=(--amp)  # fp16 autocast on the GPU, bf16 on the CPU (--small)

echo "== GPU-only correctness checks" | tee -a "$out/summary.txt"
"$py" bench/gpu_checks.py | tee -a "$out/summary.txt"

echo "== speed, mixed precision" | tee -a "$out/summary.txt"
"$py" bench/speed.py --device "$device" "${amp[@]}" "${size[@]}" "${reps[@]}" --json "$out/speed_amp.json" | tee -a "$out/summary.txt"

echo "== training speed of every family (batch 2)" | tee -a "$out/summary.txt"
if [ "$small" = 1 ]; then
  "$py" bench/train_speed.py --device "$device" --small --only "Faster R50-FPN" --out "$out/train_speed" | tail -n 6 | tee -a "$out/summary.txt"
else
  "$py" bench/train_speed.py --device "$device" "${amp[@]}" --steps 8 --warmup 3 --out "$out/train_speed" | tail -n 14 | tee -a "$out/summary.txt"
fi

echo "== inference: latency at batch 1, throughput at batch 8" | tee -a "$out/summary.txt"
half=()
[ "$device" = cuda ] && half=(--half)
if [ "$small" = 1 ]; then
  "$py" bench/infer_speed.py --device "$device" --small --json "$out/infer_speed.json" | tee -a "$out/summary.txt"
else
  "$py" bench/infer_speed.py --device "$device" "${half[@]}" --repeats 10 --warmup 3 --json "$out/infer_speed.json" | tee -a "$out/summary.txt"
fi

echo "== simpledet score against pycocotools" | tee -a "$out/summary.txt"
if [ "$small" = 1 ]; then
  "$py" bench/score_speed.py --images 20 | tee -a "$out/summary.txt"
else
  "$py" bench/score_speed.py --images 5000 | tee -a "$out/summary.txt"
fi

echo "== data loader against the training step" | tee -a "$out/summary.txt"
if [ "$small" = 1 ]; then
  "$py" bench/loader_speed.py --device "$device" --small | tee -a "$out/summary.txt"
else
  "$py" bench/loader_speed.py --device "$device" --workers 0 4 --steps 5 | tee -a "$out/summary.txt" || true
fi

echo "== quick-start detector trained on $device" | tee -a "$out/summary.txt"
rm -rf "$out/shapes" "$out/quickstart"
"$py" -m simpledet data shapes "$out/shapes" "${shapes[@]}" > /dev/null
data=(data.train.ann_file="$out/shapes/annotations/train.json" data.train.image_dir="$out/shapes/train"
      data.val.ann_file="$out/shapes/annotations/val.json" data.val.image_dir="$out/shapes/val")
start=$(date +%s)
"$py" -m simpledet train configs/quickstart/faster_r18_fpn_shapes.py --out "$out/quickstart" "${data[@]}" \
  train.device="$device" train.max_iter=$iters train.steps="($((iters * 3 / 4)),)" \
  train.checkpoint_every=$iters 2> "$out/quickstart_train.log"
echo "train wall seconds: $(( $(date +%s) - start ))" | tee -a "$out/summary.txt"
tail -n 1 "$out/quickstart/metrics.jsonl" | tee -a "$out/summary.txt"
"$py" -m simpledet eval configs/quickstart/faster_r18_fpn_shapes.py --weights "$out/quickstart/model_final.safetensors" \
  --out "$out/quickstart/eval" "${data[@]}" train.device="$device" 2>/dev/null | grep -E "maxDets=100 \] |IoU=0.50  " | tee -a "$out/summary.txt"
if [ "$diagnose" = 1 ] || [ "$small" = 1 ]; then
  echo "== speed, fp32" | tee -a "$out/summary.txt"
  "$py" bench/speed.py --device "$device" "${size[@]}" "${reps[@]}" --json "$out/speed_fp32.json" | tee -a "$out/summary.txt"
  echo "== where a training step's time goes (host against device), mixed precision" | tee -a "$out/summary.txt"
  if [ "$small" = 1 ]; then
    "$py" bench/profile_step.py --device "$device" --small --amp --top 5 | tee -a "$out/summary.txt"
  else
    "$py" bench/profile_step.py --device "$device" --amp --only "ours_tv Faster,torchvision Faster" --top 12 \
      --json "$out/profile_step.json" 2>/dev/null | tee -a "$out/summary.txt"
  fi
fi
if [ "$diagnose" = 1 ] && [ "$small" = 0 ] && [ "$device" = cuda ]; then
  echo "== diagnostics: C4 and Faster FPN in NCHW (what channels_last is worth), and bf16" | tee -a "$out/summary.txt"
  "$py" bench/train_speed.py --device cuda --amp --nchw --only "C4 C5-512ROI,ours_tv Faster" --steps 10 --warmup 3 \
    --out "$out/train_speed_nchw" | tail -n 4 | tee -a "$out/summary.txt"
  "$py" bench/train_speed.py --device cuda --amp --amp-dtype bfloat16 --only "ours_tv Faster,torchvision Faster,C4 C5-512ROI" --steps 10 --warmup 3 \
    --out "$out/train_speed_bf16" | tail -n 5 | tee -a "$out/summary.txt"
  echo "== speed, mixed precision, our backbone compiled (last: compiling takes a while)" | tee -a "$out/summary.txt"
  timeout 200 "$py" bench/speed.py --device cuda --amp --compile "${size[@]}" --repeats 10 --warmup 5 \
    --json "$out/speed_amp_compile.json" | tee -a "$out/summary.txt" || echo "compiled run stopped (timeout 200 s)"

fi
echo "suite done: $out"
