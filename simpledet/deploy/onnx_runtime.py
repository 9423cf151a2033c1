"""Runs an exported detector (.onnx, from `simpledet export --format onnx`) with ONNX Runtime.

`OnnxDetector(path)(image)` takes a float [3, H, W] RGB image in [0, 1] and returns what the
eager Predictor returns for one image: `boxes` (x1y1x2y2 in the image's pixels), `scores`,
`labels` (category ids), `category_ids` and, when the file names its categories, `names`;
`masks` [K, 1, H, W] probabilities for Mask R-CNN. Tensors are torch tensors on the CPU.
`category_names` and `category_ids` list the file's categories (from its metadata_props)."""

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from simpledet.deploy.export_onnx import METADATA_IDS, METADATA_NAMES, require_deploy_packages
from simpledet.errors import UserError
from simpledet.structures.input_checks import check_images


class OnnxDetector:
    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None) -> None:
        """providers: ONNX Runtime's execution providers in order of preference (default: the
        CPU); threads: intra-op threads (default: one per core)."""
        require_deploy_packages()
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.log_severity_level = 3  # errors only: the exporter's shape hints are warnings
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime raises its own error types for unreadable or unrunnable files
            raise UserError(f"{self.path}: ONNX Runtime cannot load it ({str(e).strip().splitlines()[0]})") from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        if [i.name for i in self.session.get_inputs()] != ["image"] or self.output_names[:3] != ["boxes", "scores",
                                                                                                  "labels"]:
            raise UserError(f"{self.path}: not a detector exported by `simpledet export` (inputs "
                            f"{[i.name for i in self.session.get_inputs()]}, outputs {self.output_names})")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.category_names: list[str] | None = json.loads(meta[METADATA_NAMES]) if METADATA_NAMES in meta else None
        self.category_ids: list[int] | None = json.loads(meta[METADATA_IDS]) if METADATA_IDS in meta else None
        self.name_of_category = (dict(zip(self.category_ids, self.category_names))
                                 if self.category_ids and self.category_names else None)

    def __call__(self, image: Tensor) -> dict:
        check_images([image])
        pixels = np.ascontiguousarray(image.detach().cpu().float().numpy())
        outputs = self.session.run(self.output_names, {"image": pixels})
        det = {name: torch.from_numpy(np.asarray(value)) for name, value in zip(self.output_names, outputs)}
        det["labels"] = det["labels"].long()
        det["category_ids"] = det["labels"].tolist()
        if self.name_of_category is not None:
            det["names"] = [self.name_of_category.get(cat, str(cat)) for cat in det["category_ids"]]
        return det
