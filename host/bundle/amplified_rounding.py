"""Refuse, before export, a VecNorm that would magnify onnxruntime's resize rounding past the verify tolerance.

A bilinear or bicubic Resize blends pixels, and onnxruntime blends them
with other rounding than torch at many sizes (last-bit differences; torch's
antialiased kernel and ONNX's separable one sum in another order). That is
harmless until a VecNorm further down divides by a scale at its floor: a
pixel that never varied while the VecNorm gathered statistics (a wall, a
score board) has loc equal to torch's blend of it and scale ~eps, so the
eager policy sees exactly 0 there and the ONNX model (1 ulp) / eps, 10^4
times the rounding. Nothing in the graph can make the two blends equal, so
edgerl measures the rounding at the export's own sizes (the transform
exported alone and run by onnxruntime on the env's reset screen) and refuses when
the magnified difference would reach half the verify tolerance.
"""

from __future__ import annotations

import torch
from torchrl.envs import EnvBase, Resize

from host.bundle.nearest_resize import is_nearest
from host.bundle.onnx_export import onnx_program
from host.bundle.transforms import BOOKKEEPING, MIN_VECNORM_SAMPLES, env_transforms, samples_of
from host.envs import is_vecnorm

BUDGET = 5e-5
"""The magnified difference allowed at the network's input: half verify's 1e-4 on values (the network's own gain
is not known here; TorchRL's Atari DQN reference measures 2e-5 and verifies at 2e-7)."""
FLOOR = 1e-2
"""Scales at or above this magnify rounding at most 100 times: not worth an export to measure."""
_STATELESS = {"ToTensorImage", "Crop", "CenterCrop", "GrayScale", "Resize", "ObservationNorm", "ClipTransform",
              "RenameTransform", "DoubleToFloat", "PermuteTransform", "UnsqueezeTransform"}


class _Alone(torch.nn.Module):
    def __init__(self, resize: Resize) -> None:
        super().__init__()
        self.resize = resize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize._apply_transform(x)


def _differences(resize: Resize, screen: torch.Tensor) -> torch.Tensor:
    """|onnxruntime - torch| of this Resize, exported as the bundle's model is, on `screen`, element by element."""
    import onnxruntime

    alone = _Alone(resize).eval()
    program = onnx_program(alone, (screen,), verbose=False)
    session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: screen.numpy()})[0]
    return (torch.from_numpy(theirs).double() - alone(screen).double()).abs()


def _screen_before(env: EnvBase, resize: Resize, key: object) -> torch.Tensor | None:
    """What `resize` gets at the env's reset: the raw observation through the transforms before it.

    Only stateless image transforms are replayed (the pixel pipelines' usual head); another one before the
    resize gives None and the caller falls back to flat screens.
    """
    seen = env.base_env.reset()
    for t in env_transforms(env):
        if t is resize:
            return seen.get(key, None)
        if type(t).__name__ in _STATELESS:
            seen = t._call(seen.clone())
        elif type(t).__name__ not in BOOKKEEPING:
            return None
    return None


def _magnified(env: EnvBase, resize: Resize, key: object, scale: torch.Tensor) -> float:
    """The largest onnxruntime-vs-torch difference of the resize (of `key`), divided by the VecNorm scale it meets."""
    screen = _screen_before(env, resize, key)
    if screen is None:  # flat screens of a few levels: the features at a scale's floor never varied
        shape = tuple(resize.parent.full_observation_spec[key].shape)
        screen = torch.stack([torch.full(shape[-3:], level) for level in (0.1, 0.5, 0.9)])
    diff = _differences(resize, screen.float())
    diff = diff.reshape(-1, *diff.shape[-3:]).max(0).values  # (C, H, W): the worst level per pixel
    c, h, w = diff.shape
    if scale.shape[-2:] == (h, w) and scale.numel() % diff.numel() == 0:  # a frame stack repeats the pixels
        per_pixel = scale.reshape(-1, c, h, w).min(0).values
    else:  # another layout in between (a permute): every pixel against the smallest scale, the worst case
        per_pixel = scale.min()
    return float((diff / per_pixel.double()).max())


def rounding_problems(env: EnvBase | None) -> list[str]:
    """Every VecNorm of the env that would magnify a blending Resize's onnxruntime rounding past the budget."""
    blended: dict = {}  # key -> the last blending Resize applied to it
    problems = []
    for t in env_transforms(env):
        if isinstance(t, Resize) and not is_nearest(t):
            for in_key, out_key in zip(t.in_keys, t.out_keys, strict=True):
                blended[out_key] = (t, in_key)
        elif is_vecnorm(t) and samples_of(t) >= MIN_VECNORM_SAMPLES:
            _, scale = t._get_loc_scale()
            for key in t.in_keys:
                (resize, source), low = blended.get(key, (None, None)), float(scale.get(key).min())
                if resize is None or low >= FLOOR:
                    continue
                magnified = _magnified(env, resize, source, scale.get(key))
                if magnified > BUDGET:
                    problems.append(
                        f"{type(t).__name__} on {key} divides by scales down to {low:.0e} (features that barely "
                        f"varied while it gathered statistics) after a {resize.interpolation.value} Resize that "
                        f"onnxruntime rounds otherwise than torch: the network's input on the board would differ by "
                        f"up to {magnified:.0e} (give the VecNorm a larger eps, e.g. 1e-2, or resize with "
                        "interpolation='nearest')")
    return problems
