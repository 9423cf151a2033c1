#!/usr/bin/env bash
# Every GPU measurement in one run, made to fit a short slot of GPU time:
# training speed of our Faster R-CNN R50-FPN against torchvision's (mixed precision; ours also
# with train.cuda_graphs), GPU-only checks, every family's training img/s and memory (fp32 and
# mixed), inference latency and throughput, the loader against the model, the quick-start detector
# trained (CUDA graphs, fixed canvas) and evaluated on the device, and scoring against pycocotools
# (CPU work, on 2,000 images here). Each section prints how many seconds into the suite it starts.
#
#   bench/gpu_suite.sh [--small] [--diagnose] [--section-timeout S] [OUT_DIR]   (default OUT_DIR: runs/gpu_suite)
#
# A section that fails or runs past its time limit is named in summary.txt and the suite goes on
# to the next: one broken benchmark must not cost the rest of scarce GPU time. The suite then exits 1.
# --section-timeout S caps every section at S seconds (default: each section's own limit).
#
# --small shrinks every size so the whole suite runs end to end on a CPU (the tests do this).
# --diagnose adds, after everything else, runs that explain rather than report (fp32 speed, our
# models in NCHW, bf16, a compiled backbone); a few more minutes. --small leaves them out (speed.py's
# fp32 path runs in tests/test_speed_bench.py).
# Wheels found in .whl/ (e.g. faster-coco-eval for a machine without it) are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."

small=0
diagnose=0
section_timeout=
out=runs/gpu_suite
while [ $# -gt 0 ]; do
  case "$1" in
    --small) small=1 ;;
    --diagnose) diagnose=1 ;;
    --section-timeout) section_timeout=$2; shift ;;
    *) out=$1 ;;
  esac
  shift
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
summary=$out/summary.txt
failed=()

# run_section LIMIT NAME FUNCTION: runs FUNCTION in a subshell under `set -e`, its Python commands
# within LIMIT seconds in all (or --section-timeout's); a failure or a timeout is written down and
# the suite goes on
run_section() {
  local limit=${section_timeout:-$1} name=$2 rc why
  echo "== $name  [${SECONDS} s into the suite]" | tee -a "$summary"
  set +e
  (set -e; deadline=$(( $(date +%s) + limit )); "$3")
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    case "$rc" in
      124|137) why="stopped at its limit of $limit s" ;;
      *) why="exit $rc" ;;
    esac
    echo "!! section failed ($why): $name" | tee -a "$summary"
    failed+=("$name")
  fi
}
# python, with what is left of the running section's time (then SIGTERM, and SIGKILL 10 s later)
pyrun() {
  local left=$(( deadline - $(date +%s) ))
  timeout -k 10 $(( left > 1 ? left : 1 )) "$py" "$@"
}

checks() { pyrun bench/gpu_checks.py | tee -a "$summary"; }

speed_amp() {
  local graphs=()
  [ "$device" = cuda ] && graphs=(--cuda-graphs)  # adds a row: ours with train.cuda_graphs
  pyrun bench/speed.py --device "$device" "${amp[@]}" "${graphs[@]}" "${size[@]}" "${reps[@]}" \
    --json "$out/speed_amp.json" | tee -a "$summary"
}

train_speed() {
  if [ "$small" = 1 ]; then
    pyrun bench/train_speed.py --device "$device" --small --only "Faster R50-FPN" --out "$out/train_speed" \
      | tail -n 6 | tee -a "$summary"
  else
    pyrun bench/train_speed.py --device "$device" "${amp[@]}" --steps 8 --warmup 3 --out "$out/train_speed" \
      | tail -n 14 | tee -a "$summary"
  fi
}

infer_speed() {
  if [ "$small" = 1 ]; then
    # exporting is covered by tests/test_export_*.py; the end-to-end check keeps to the eager rows
    pyrun bench/infer_speed.py --device "$device" --small --exported --json "$out/infer_speed.json" | tee -a "$summary"
  else
    local half=()
    [ "$device" = cuda ] && half=(--half)
    pyrun bench/infer_speed.py --device "$device" "${half[@]}" --repeats 10 --warmup 3 --json "$out/infer_speed.json" \
      | tee -a "$summary"
  fi
}

loader_speed() {
  if [ "$small" = 1 ]; then
    pyrun bench/loader_speed.py --device "$device" --small | tee -a "$summary"
  else
    pyrun bench/loader_speed.py --device "$device" --workers 4 --steps 5 | tee -a "$summary"
  fi
}

quickstart() {
  rm -rf "$out/shapes" "$out/quickstart"
  pyrun -m simpledet data shapes "$out/shapes" "${shapes[@]}" > /dev/null
  local data=(data.train.ann_file="$out/shapes/annotations/train.json" data.train.image_dir="$out/shapes/train"
              data.val.ann_file="$out/shapes/annotations/val.json" data.val.image_dir="$out/shapes/val")
  local start
  start=$(date +%s)
  pyrun -m simpledet train configs/quickstart/faster_r18_fpn_shapes.py --out "$out/quickstart" "${data[@]}" \
    train.device="$device" train.max_iter=$iters train.steps="($((iters * 3 / 4)),)" \
    train.checkpoint_every=$iters train.cuda_graphs=true model.input.fixed_canvas=true 2> "$out/quickstart_train.log"
  echo "train wall seconds: $(( $(date +%s) - start ))" | tee -a "$summary"
  tail -n 1 "$out/quickstart/metrics.jsonl" | tee -a "$summary"
  pyrun -m simpledet eval configs/quickstart/faster_r18_fpn_shapes.py --weights "$out/quickstart/model_final.safetensors" \
    --out "$out/quickstart/eval" "${data[@]}" train.device="$device" 2>/dev/null \
    | grep -E "maxDets=100 \] |IoU=0.50  " | tee -a "$summary"
}

score_speed() {
  local images=2000
  [ "$small" = 1 ] && images=20
  pyrun bench/score_speed.py --images "$images" | tee -a "$summary"
}

speed_fp32() {
  pyrun bench/speed.py --device "$device" "${size[@]}" "${reps[@]}" --json "$out/speed_fp32.json" | tee -a "$summary"
}

profile() {
  if [ "$small" = 1 ]; then
    pyrun bench/profile_step.py --device "$device" --small --amp --top 5 | tee -a "$summary"
  else
    pyrun bench/profile_step.py --device "$device" --amp --cuda-graphs --only "ours_tv Faster,torchvision Faster" \
      --top 12 --json "$out/profile_step.json" 2>/dev/null | tee -a "$summary"
  fi
}

diagnostics() {
  pyrun bench/train_speed.py --device cuda --amp --nchw --only "C4 C5-512ROI,ours_tv Faster" --steps 10 --warmup 3 \
    --out "$out/train_speed_nchw" | tail -n 4 | tee -a "$summary"
  pyrun bench/train_speed.py --device cuda --amp-only --cuda-graphs --steps 10 --warmup 3 \
    --out "$out/train_speed_graphs" | tail -n 14 | tee -a "$summary"
  pyrun bench/train_speed.py --device cuda --amp-only --no-cudnn-benchmark --only "Mask,TridentNet" --steps 10 --warmup 3 \
    --out "$out/train_speed_heuristics" | tail -n 6 | tee -a "$summary"
  pyrun bench/train_speed.py --device cuda --amp --amp-dtype bfloat16 --only "ours_tv Faster,torchvision Faster,C4 C5-512ROI" \
    --steps 10 --warmup 3 --out "$out/train_speed_bf16" | tail -n 5 | tee -a "$summary"
}

speed_compiled() {
  pyrun bench/speed.py --device cuda --amp --compile "${size[@]}" --repeats 10 --warmup 5 \
    --json "$out/speed_amp_compile.json" | tee -a "$summary"
}

# limits: guards against a hang, well above what each section needs (docs/benchmarks.md gives the
# suite's running time), and enough for the --small run on 2 CPU cores. The speed against torchvision comes
# first: it is the figure the GPU time is for, and a run cut short keeps it.
run_section 200 "speed, mixed precision" speed_amp
run_section 150 "GPU-only correctness checks" checks
# where the graphed step's time still goes: what to change next if the speed falls short
run_section 200 "where a training step's time goes (host against device), mixed precision" profile
run_section 200 "training speed of every family (batch 2)" train_speed
run_section 120 "inference: latency at batch 1, throughput at batch 8" infer_speed
run_section 200 "quick-start detector trained on $device (CUDA graphs on a GPU, fixed canvas)" quickstart
run_section 120 "data loader against the training step" loader_speed
run_section 150 "simpledet score against pycocotools (CPU work: the COCO-sized run of 5,000 images is a CPU benchmark)" score_speed
if [ "$diagnose" = 1 ]; then
  run_section 200 "speed, fp32" speed_fp32
fi
if [ "$diagnose" = 1 ] && [ "$small" = 0 ] && [ "$device" = cuda ]; then
  run_section 300 "diagnostics: NCHW (what channels_last is worth), every family with CUDA graphs, cuDNN heuristics for the RoI-count-varying heads, bf16" diagnostics
  run_section 200 "speed, mixed precision, our backbone compiled (last: compiling takes a while)" speed_compiled
fi
if [ ${#failed[@]} != 0 ]; then
  echo "suite done in ${SECONDS} s, ${#failed[@]} section(s) failed: $(IFS=';'; echo "${failed[*]}")" | tee -a "$summary"
  exit 1
fi
echo "suite done in ${SECONDS} s: $out" | tee -a "$summary"
