"""TorchRL policies taken through edgerl: the export tutorial's own, and policies edgerl has never seen."""
