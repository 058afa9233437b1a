"""Bundles for the benchmarks: exported once into build/bench/ and reused."""

from pathlib import Path

from device.manifest import MANIFEST

ROOT = Path(__file__).resolve().parents[1] / "build" / "bench"


def bundle(kind: str = "dqn") -> Path:
    out = ROOT / kind
    if not (out / MANIFEST).is_file():
        from host.bundle.pipeline import ExportConfig, export_bundle

        export_bundle(ExportConfig(out=out, untrained=True, network=kind, aoti=False), say=lambda _: None)
    return out
