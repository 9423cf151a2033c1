"""Inference speed of our Faster / Mask R-CNN and RetinaNet R50-FPN against torchvision's.

Same architecture and the same random weights (shared, frozen BN calibrated) as bench/speed.py,
the same 800x1333 inputs, both models in
`torch.inference_mode`, interleaved in one process. Two numbers per model:
  latency     median seconds for one image (batch 1), pre- and post-processing included;
  throughput  images per second at batch 8 (one call on a list of 8 images).
`--half` runs both under half-precision autocast, fp16 on a GPU and bf16 on the CPU (oneDNN's
AMX / AVX-512 bf16 kernels where the CPU has them): our heads decode boxes and score in fp32.

Our model exported (simpledet/deploy: the whole detector, resize to NMS, as one graph of one
image) runs beside them, each its own row with its ratios to torchvision (`--exported`):
  onnxruntime            the ONNX graph on ONNX Runtime's CPU provider (graph optimisations all
                         on, intra-op threads = --ort-threads, default torch's thread count);
  onnxruntime-cuda,      the same graph on ONNX Runtime's CUDA / TensorRT providers (GPU, where the
  onnxruntime-tensorrt   installed onnxruntime has them; the image is copied from the host per call);
  program-compiled       the torch.export ExportedProgram on the GPU, through torch.compile.
A graph takes one image: its batch-8 throughput is 8 calls in turn. A path the machine cannot run
is reported and left out.

    python bench/infer_speed.py                          # CPU, 2 threads is this machine
    python bench/infer_speed.py --half                   # CPU, both models in bf16
    python bench/infer_speed.py --device cuda --half     # GPU
    python bench/infer_speed.py --small                  # a quick end-to-end run on the CPU
"""

import argparse
import copy
import json
import platform
import statistics
import tempfile
import traceback
from pathlib import Path

import torch
from speed import CONFIGS, make_inputs, matched_pair, time_inference

from simpledet.files import atomic_write_text

EXPORTED = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "program-compiled")
ORT_PROVIDERS = {"onnxruntime": "CPUExecutionProvider", "onnxruntime-cuda": "CUDAExecutionProvider",
                 "onnxruntime-tensorrt": "TensorrtExecutionProvider"}


def exported_runners(ours: torch.nn.Module, family: str, example: torch.Tensor, device: torch.device,
                     kinds: list[str], ort_threads: int, folder: Path) -> dict:
    """name -> run(images) for each exported path of `kinds` that this machine can run: our model
    (a copy, NCHW) exported once to a program, and from it to ONNX where an ONNX path is asked for."""
    from simpledet.deploy.export_program import export_program
    from simpledet.deploy.exportable import ExportableDetector

    model = copy.deepcopy(ours).cpu().to(memory_format=torch.contiguous_format)
    detector = ExportableDetector(model, category_ids=None, masks=family == "mask")
    try:
        program = export_program(detector, example.cpu())
    except Exception:  # a report, not a stop: the eager rows are still measured
        print("export failed: no exported rows\n" + traceback.format_exc(limit=3))
        return {}
    runners = {}
    onnx_kinds = [k for k in kinds if k in ORT_PROVIDERS]
    if onnx_kinds:
        import onnxruntime as ort

        from simpledet.deploy.export_onnx import onnx_model, save_onnx

        path = folder / "model.onnx"
        save_onnx(onnx_model(copy.deepcopy(program), detector.output_names), path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = ort_threads
        for kind in onnx_kinds:
            if ORT_PROVIDERS[kind] not in ort.get_available_providers():
                print(f"{kind}: this onnxruntime has no {ORT_PROVIDERS[kind]} ({ort.get_available_providers()})")
                continue
            session = ort.InferenceSession(str(path), options, providers=[ORT_PROVIDERS[kind]])

            def run(images, session=session):
                for image in images:
                    session.run(None, {"image": image.cpu().numpy()})
            runners[kind] = run
    if "program-compiled" in kinds:
        if device.type != "cuda":
            print("program-compiled: for GPUs (--device cuda)")
        else:
            try:
                moved = torch.export.passes.move_to_device_pass(program, str(device))
                compiled = torch.compile(moved.module())

                def run_program(images):
                    with torch.no_grad():
                        for image in images:
                            compiled(image)
                run_program([example.to(device)])  # the compile, outside the timing
                runners["program-compiled"] = run_program
            except Exception:  # a report, not a stop: the other rows are still measured
                print("program-compiled: failed\n" + traceback.format_exc(limit=3))
    return runners


def measure(models: dict, images: list, device, halves: dict[str, bool], warmup: int, repeats: int
            ) -> dict[str, float]:
    """Median seconds per call for each model (in half precision where `halves` says so), calls
    interleaved so machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(warmup + repeats):
        for name, model in models.items():
            t = time_inference(model, images, device, halves[name])
            if i >= warmup:
                times[name].append(t)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=sorted(CONFIGS), default="faster")
    ap.add_argument("--half", action="store_true", help="half-precision autocast: fp16 on a GPU, bf16 on the CPU")
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1333)
    ap.add_argument("--batch", type=int, default=8, help="the throughput batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--small", action="store_true", help="tiny sizes: an end-to-end check, not a measurement")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--exported", nargs="*", choices=EXPORTED, default=None,
                    help="exported paths to time beside the eager models (default: onnxruntime on the CPU; "
                         "onnxruntime-cuda, onnxruntime-tensorrt and program-compiled on a GPU); none: no flag value")
    ap.add_argument("--with-fp32", action="store_true", help="with --half: also both models in fp32, interleaved "
                                                                  "(rows 'torchvision fp32' and 'ours fp32')")
    ap.add_argument("--ort-threads", type=int, default=None, help="ONNX Runtime's intra-op threads (default: "
                                                                   "torch's thread count)")
    args = ap.parse_args()
    if args.small:
        args.height, args.width, args.batch, args.repeats, args.warmup = 160, 224, 2, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    half = args.half
    torch.manual_seed(0)
    size = (args.height, args.width)
    images, _ = make_inputs(args.batch, args.height, args.width, device)
    models = {name: model.eval() for name, model in matched_pair(args.model, size, device, images).items()}
    # the ONNX graph on the CPU is fp32: beside bf16 eager models it would compare two precisions
    kinds = args.exported if args.exported is not None else (
        [] if device.type == "cpu" and half else ["onnxruntime"] if device.type == "cpu"
        else ["onnxruntime-cuda", "onnxruntime-tensorrt", "program-compiled"])
    if kinds:
        with tempfile.TemporaryDirectory() as folder:
            models.update(exported_runners(models["ours"], args.model, images[0], device, kinds,
                                           args.ort_threads or torch.get_num_threads(), Path(folder)))

    halves = {name: half for name in models}
    if half and args.with_fp32:  # the same models again, without autocast
        models.update({"torchvision fp32": models["torchvision"], "ours fp32": models["ours"]})
        halves.update({"torchvision fp32": False, "ours fp32": False})
    latency = measure(models, images[:1], device, halves, args.warmup, args.repeats)
    batched = measure(models, images, device, halves, args.warmup, args.repeats)
    results = {name: {"latency_s": latency[name], "throughput_img_s": args.batch / batched[name]} for name in models}
    results["latency_ratio_ours_over_torchvision"] = latency["ours"] / latency["torchvision"]
    results["throughput_ratio_ours_over_torchvision"] = \
        results["ours"]["throughput_img_s"] / results["torchvision"]["throughput_img_s"]
    for name in models:
        if name not in ("ours", "torchvision"):
            results[f"latency_ratio_{name}_over_torchvision"] = latency[name] / latency["torchvision"]
            results[f"throughput_ratio_{name}_over_torchvision"] = \
                results[name]["throughput_img_s"] / results["torchvision"]["throughput_img_s"]
    if "torchvision fp32" in models:  # every row against torchvision as it runs by default
        for name in models:
            results[f"latency_ratio_{name}_over_torchvision_fp32"] = latency[name] / latency["torchvision fp32"]
    if device.type == "cuda":
        results["device_name"] = torch.cuda.get_device_name(device)
    else:
        results["device_name"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    results["settings"] = vars(args) | {"torch": torch.__version__}

    print(f"{args.model} inference: {results['device_name']}  input {args.height}x{args.width}  half={half}")
    for name in models:
        r = results[name]
        print(f"{name:16s} latency (batch 1) {r['latency_s'] * 1000:8.1f} ms   "
              f"throughput (batch {args.batch}) {r['throughput_img_s']:7.2f} img/s")
    for name in models:
        if name != "torchvision":
            print(f"{name} / torchvision: latency {results[f'latency_ratio_{name}_over_torchvision']:.3f} "
                  f"(lower is better), throughput {results[f'throughput_ratio_{name}_over_torchvision']:.3f}x")
    if "torchvision fp32" in models:
        print("against torchvision in fp32: " + ", ".join(
            f"{name} {results[f'latency_ratio_{name}_over_torchvision_fp32']:.3f}" for name in models))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
