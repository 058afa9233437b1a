"""The board side of edgerl: plays a bundle's ONNX policy on the ALE, torch-free."""
