"""Correctness checks that only a GPU can run: deformable convolution on CUDA (zero offsets equal
a plain convolution; a DCN ResNet trains under fp16 autocast), our Faster R-CNN's detections
on CUDA against the CPU on the same weights, fp16 training, CUDA-graph training against eager (and
the R-CNN sampling graph alone, bit for bit), and NMS calls run at once on CUDA streams against the
calls in turn. Prints one line per check; exits 1 if any fails."""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from simpledet import build_model, load_config
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.layers.deform_conv import DeformConv2d

REPO = Path(__file__).resolve().parents[1]  # configs are found from any working directory
QUICKSTART = REPO / "configs/quickstart/faster_r18_fpn_shapes.py"


def main() -> int:
    if not torch.cuda.is_available():
        print("no GPU: skipped")
        return 0
    dev = torch.device("cuda")
    failures = 0
    torch.manual_seed(0)

    conv = DeformConv2d(16, 32, 3, padding=1, deformable_groups=4).to(dev)
    x = torch.randn(2, 16, 20, 24, device=dev)
    diff = (conv(x) - F.conv2d(x, conv.weight, None, 1, 1)).abs().max().item()
    ok = diff < 1e-4
    failures += not ok
    print(f"dcn zero offsets == conv on CUDA: max diff {diff:.2e} {'ok' if ok else 'FAIL'}")

    net = ResNetConfig(depth=50, dcn_blocks=(0, 4, 6, 0), out_features=("c4",)).build().to(dev).train()
    with torch.autocast("cuda", dtype=torch.float16):
        out = net(torch.rand(2, 3, 256, 256, device=dev))["c4"]
    out.float().square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad and p.grad is not None]
    ok = bool(grads) and all(torch.isfinite(g).all() for g in grads)
    failures += not ok
    print(f"dcn resnet fp16 forward/backward on CUDA: {len(grads)} finite gradients {'ok' if ok else 'FAIL'}")

    # random weights make near-ties in the detections, so compare the features, not the boxes
    cfg = load_config(REPO / "configs/torchvision/fasterrcnn_resnet50_fpn.py")
    model = build_model(cfg).eval()
    batch = torch.rand(1, 3, 480, 640)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # fp32 against fp32: TF32 alone differs by ~1e-3
    try:
        with torch.no_grad():
            cpu = model.neck(model.backbone(batch))
            gpu = model.to(dev).neck(model.backbone(batch.to(dev)))
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    rel = max(((cpu[k] - gpu[k].cpu()).abs().max() / cpu[k].abs().max()).item() for k in cpu)
    ok = rel < 1e-3
    failures += not ok
    print(f"faster r-cnn FPN features, CPU vs CUDA: max relative diff {rel:.1e} {'ok' if ok else 'FAIL'}")
    failures += check_fp16_training(dev)
    failures += check_cuda_graphs(dev)
    failures += check_graphed_sampling(dev)
    failures += check_concurrent_nms(dev)
    return 1 if failures else 0


def check_concurrent_nms(dev: torch.device) -> int:
    """concurrent_nms on CUDA streams: the RPN's ten calls of a 2-image, 800x1216 step (an image and
    level each) give torchvision's results in turn, read on the main stream right after (the
    streams' ordering), fifty times over with fresh inputs (memory reused between the streams);
    and how long each way takes."""
    import statistics
    import time

    from torchvision.ops import nms

    from simpledet.accel.concurrent_nms import concurrent_nms

    def groups() -> list:
        out = []
        for n in (2000,) * 8 + (741,) * 2:  # 2 images x 5 levels, 2,000 top-k each (P6 has 741 anchors)
            xy = torch.rand(n, 2, device=dev) * 1200
            out.append((torch.cat([xy, xy + 8 + torch.rand(n, 2, device=dev) * 200], 1), torch.rand(n, device=dev)))
        return out

    mismatches = 0
    for _ in range(50):
        g = groups()
        offsets = [2000 * i for i in range(len(g))]  # added on the side streams, as the RPN asks
        ours = concurrent_nms(g, 0.7, offsets)
        sums = [k.sum() for k in ours]  # read on the main stream at once
        expected = [nms(b, s, 0.7) + offset for (b, s), offset in zip(g, offsets)]
        mismatches += sum(not torch.equal(a, b) or s.item() != b.sum().item() for a, b, s in zip(ours, expected, sums))
    ok = mismatches == 0
    timings = {}
    for name, run in (("in turn", lambda g: [nms(b, s, 0.7) for b, s in g]),
                      ("concurrent", lambda g: concurrent_nms(g, 0.7))):
        times = []
        for _ in range(20):
            g = groups()
            torch.cuda.synchronize()
            start = time.perf_counter()
            run(g)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        timings[name] = 1e3 * statistics.median(times)
    print(f"concurrent NMS on CUDA streams == torchvision's in turn (50 x 10 calls): {mismatches} mismatches; "
          f"{timings['concurrent']:.2f} ms against {timings['in turn']:.2f} ms in turn {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


def check_cuda_graphs(dev: torch.device) -> int:
    """train.cuda_graphs: training steps through the captured backbone, neck and dense head (the
    RPN's, RetinaNet's subnets), and each R-CNN stage's sampling and 2MLP box head with its losses
    (train.cuda_graph_heads), give the eager model's losses and gradients (fp32 and fp16 autocast), one
    capture per input
    shape, and evaluation stays eager."""
    failures = 0
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False  # the same algorithms on both sides
    try:
        for family, config in (("fasterrcnn", "configs/torchvision/fasterrcnn_resnet50_fpn.py"),
                               ("retinanet", "configs/torchvision/retinanet_resnet50_fpn.py"),
                               ("cascade", "configs/cascade_r50v1_fpn_1x.py")):
            cfg = load_config(REPO / config, ["model.input.min_size=(320,)", "model.input.max_size=448",
                                              "model.backbone.fuse_frozen_bn=true"])
            for amp in (False, True):
                failures += compare_graphed_with_eager(cfg, family, amp, dev)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    return failures


def check_graphed_sampling(dev: torch.device) -> int:
    """The R-CNN sampling graph (train.cuda_graph_heads) against the same stage's method run
    eagerly, on twenty fresh inputs of one padded size: the same sampled candidates, counts,
    matches, classes and targets, bit for bit. Fresh inputs every round: a replay that read stale
    buffers, or outputs overwritten before they are read, would differ."""
    from simpledet.accel.cuda_graphs import enable_cuda_graphs
    from simpledet.structures.ground_truth import PaddedGroundTruth, pad_boxes

    model = build_model(load_config(QUICKSTART)).to(dev).train()
    enable_cuda_graphs(model, 1, dev)
    heads = model.roi_heads
    graphed = heads.match_and_sample  # the instance's replacement: padding, then the graph
    g = torch.Generator(device=dev).manual_seed(0)

    def boxes(n: int) -> torch.Tensor:
        xy = torch.rand(n, 2, device=dev, generator=g) * 300
        return torch.cat([xy, xy + 4 + torch.rand(n, 2, device=dev, generator=g) * 150], 1)

    mismatches = 0
    with torch.no_grad():
        for round_ in range(20):
            counts = [(3 + round_ % 5, 900 + 7 * round_), (8, 1000 - 5 * round_)]  # (ground truths, candidates)
            gt = PaddedGroundTruth.of([{"boxes": boxes(n), "labels": torch.randint(1, 9, (n,), device=dev,
                                                                                   generator=g)}
                                       for n, _ in counts], dev)
            candidates, valid = pad_boxes([boxes(m) for _, m in counts], dev)
            priority = torch.rand((2, *valid.shape), device=dev, generator=g)
            inputs = (gt.boxes, gt.valid, gt.labels, candidates, valid, priority)
            replayed = [t.clone() for t in graphed(*inputs)]
            eager = type(heads).match_and_sample(heads, *inputs)
            mismatches += sum(not torch.equal(a, b) for a, b in zip(replayed, eager))
    cache = graphed.runner
    ok = mismatches == 0 and len(cache.graphs) == 1 and not cache.capture_failed
    print(f"R-CNN sampling graph == eager (20 fresh inputs, one capture): {mismatches} mismatched outputs, "
          f"{len(cache.graphs)} capture {'ok' if ok else 'FAIL'}")
    return int(not ok)


def check_fp16_training(dev: torch.device) -> int:
    """fp16 training with dynamic loss scaling: the scale is in the checkpoint and comes back on
    resume, metrics.jsonl logs it with the skipped steps; host syncs in a training step are
    counted; fp16 inference returns fp32 detections."""
    import tempfile
    import warnings

    from simpledet.api import Predictor
    from simpledet.data.shapes import generate_shapes
    from simpledet.engine.trainer import Trainer

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shapes"
        generate_shapes(data, num_train=16, num_val=4, seed=0)
        overrides = [f"data.train.ann_file={data / 'annotations/train.json'}", f"data.train.image_dir={data / 'train'}",
                     f"data.val.ann_file={data / 'annotations/val.json'}", f"data.val.image_dir={data / 'val'}",
                     "data.num_workers=0", "train.device=cuda", "train.amp=true", "train.checkpoint_every=4",
                     "train.log_every=4"]
        cfg = load_config(QUICKSTART, overrides + ["train.max_iter=4"])
        trainer = Trainer(cfg, Path(tmp) / "run")
        trainer.train()
        saved = torch.load(Path(tmp) / "run" / "model_final.state.pth", weights_only=True)["scaler"]
        resumed = Trainer(load_config(QUICKSTART, overrides + ["train.max_iter=6"]),
                          Path(tmp) / "run", resume=True)
        ok = "scale" in saved and resumed.scaler.get_scale() == float(saved["scale"])
        failures += not ok
        print(f"fp16 dynamic loss scale in the checkpoint and restored on resume: {saved.get('scale')} "
              f"{'ok' if ok else 'FAIL'}")
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
        ok = bool(records) and all(r.get("loss_scale", 0) >= 1 and r.get("skipped_steps", -1) >= 0 for r in records)
        failures += not ok
        print(f"fp16 loss scale and skipped steps in metrics.jsonl: "
              f"{[(r.get('loss_scale'), r.get('skipped_steps')) for r in records]} {'ok' if ok else 'FAIL'}")

        # host-device synchronisations in one training step (informative: NMS and data-dependent
        # sizes sync by nature; the loop itself adds none)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                resumed.train()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        print(f"host syncs in 2 fp16 training steps (incl. one log + checkpoint step): {syncs}")

        predictor = Predictor(load_config(QUICKSTART,
                                          overrides + ["test.amp=true"]), device="cuda")
        det = predictor(torch.rand(3, 128, 128))
        ok = det["boxes"].dtype == torch.float32 and det["scores"].dtype == torch.float32
        failures += not ok
        print(f"fp16 inference returns fp32 detections: {'ok' if ok else 'FAIL'}")
    return failures


def compare_graphed_with_eager(cfg, family: str, amp: bool, dev: torch.device) -> int:
    """Three SGD steps of a model through train.cuda_graphs against the same model eager."""
    import copy

    from simpledet.accel.cuda_graphs import enable_cuda_graphs

    torch.manual_seed(0)
    eager = build_model(cfg).to(dev).to(memory_format=torch.channels_last).train()
    graphed = copy.deepcopy(eager)
    enable_cuda_graphs(graphed, 4, dev)
    images = [torch.rand(3, 320, 416, device=dev) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 20, 200, 220], [50, 60, 300, 280]], device=dev),
                "labels": torch.tensor([1, 5], device=dev)} for _ in range(2)]
    losses, grads = {}, {}
    for name, model in (("eager", eager), ("graphed", graphed)):
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
        losses[name] = []
        for step in range(3):
            torch.manual_seed(step)  # the same proposal and RoI samples on both sides
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                loss = sum(model(images, targets).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if step == 0:
                grads[name] = [p.grad.clone() for p in model.parameters() if p.requires_grad]
            optimizer.step()
            losses[name].append(loss.item())
    loss_rel = max(abs(a - b) / abs(a) for a, b in zip(losses["eager"], losses["graphed"]))
    grad_rel = max(((a - b).abs().max() / a.abs().max().clamp(min=1e-12)).item()
                   for a, b in zip(grads["eager"], grads["graphed"]))
    tol = 2e-2 if amp else 1e-3
    captured = len(graphed.dense_step.graphs)

    def head_captures() -> list[int]:  # per R-CNN stage: sampling, and box head with losses
        return [len(cache.graphs) for stage in graphed.rcnn_stages()
                for cache in (stage.match_and_sample.runner, stage.box_head_losses)]

    heads = head_captures()
    graphed.eval()
    with torch.no_grad():
        graphed([images[0]])  # eval: eager, no new capture
    # each graphed part of the heads captured at least once (more where the padded sizes varied)
    ok = (loss_rel < tol and grad_rel < tol and captured == 1 and len(graphed.dense_step.graphs) == 1
          and all(n >= 1 for n in heads) and heads == head_captures())
    print(f"cuda graphs, {family} ({'fp16' if amp else 'fp32'}) == eager over 3 SGD steps: loss rel {loss_rel:.1e}, "
          f"gradient rel {grad_rel:.1e}, {captured} capture, heads' captures {heads} {'ok' if ok else 'FAIL'}")
    return int(not ok)

if __name__ == "__main__":
    sys.exit(main())
