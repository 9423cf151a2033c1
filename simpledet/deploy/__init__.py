"""Detectors as files that run without this package: an ONNX graph (export_onnx, run by
onnx_runtime.OnnxDetector) or a torch.export ExportedProgram (export_program), each the whole
detector of one image (exportable.ExportableDetector)."""
