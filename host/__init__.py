"""Host side of edgerl: training, export, verification (needs torch and torchrl)."""
