"""Making, checking and judging bundles: any TorchRL actor -> graph -> pt2 / AOTInductor / ONNX -> verified."""
