"""Inference runtimes for LiteMedSAM: torch (the reference) and OpenVINO (the CPU default).

One factory, :func:`build_runtime`, chooses the runtime by name and precision. Every runtime
has the attributes of the torch network that :mod:`rafss_core.segmentation.litemedsam` calls:
``image_encoder(frames)``, ``prompt_encoder`` (always torch; it costs about 5 ms) and
``mask_decoder(...)`` with SAM's keyword arguments, so :func:`~litemedsam.encode` and
:func:`~litemedsam.decode` run any of them, and the torch network itself is the reference.

* ``torch``: the network as loaded, on its device, under bf16 autocast for ``bf16``.
* ``openvino``: the image encoder (batch 1) and mask decoder (any batch) converted from the
  verified torch weights once, saved as OpenVINO IR under ``compiled_dir`` (keyed by the
  checkpoint digest and the OpenVINO version) and compiled for the CPU at build time. In
  ``fp32`` its encodings equal torch's to about 3e-6 (relative L2); ``bf16`` uses the CPU's
  native bf16 units (AMX or AVX-512 BF16).
* ``auto``: ``openvino`` on the CPU when it is installed, otherwise ``torch``.

Precision ``auto`` is bf16 under OpenVINO on a CPU with native bf16, as chosen on ACDC ``val``
(:func:`resolve_precision`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "openvino")
# OpenVINO's name for each precision (its INFERENCE_PRECISION_HINT)
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


class RuntimeChoiceError(ValueError):
    """A runtime that is unknown or cannot run here; the message names the fix."""


def check_runtime(name: str) -> str:
    """The runtime's name, normalised; a :class:`RuntimeChoiceError` for anything unknown."""
    name = name.strip().lower()
    if name not in RUNTIMES:
        raise RuntimeChoiceError(f"runtime {name!r} is not one of {', '.join(RUNTIMES)}")
    return name


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(name: str, device: str) -> str:
    """``auto`` -> ``openvino`` on the CPU when installed, else ``torch``; the others as given
    (``openvino`` is refused on a GPU and when it is not installed, with the fix)."""
    name = check_runtime(name)
    on_cpu = device == "cpu"
    if name == "auto":
        return "openvino" if on_cpu and openvino_available() else "torch"
    if name == "openvino" and not on_cpu:
        raise RuntimeChoiceError(f"runtime openvino runs on the CPU, not on {device}; "
                            "set RAFSS_RUNTIME=torch (or auto) for a GPU")
    if name == "openvino" and not openvino_available():
        raise RuntimeChoiceError("runtime openvino is not installed: pip install openvino, "
                            "or set RAFSS_RUNTIME=torch")
    return name


def native_bf16() -> bool:
    """Whether OpenVINO finds native bf16 units on this CPU (AMX or AVX-512 BF16)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_precision(name: str, runtime: str, device: str) -> str:
    """LiteMedSAM's precision: ``auto`` -> ``bf16`` where OpenVINO runs on a CPU with native
    bf16 (chosen on ACDC ``val``: Dice within 0.005 of fp32 torch on every label, see the
    README), on a GPU as :func:`devices.resolve_precision` says, else ``fp32``; ``fp32`` and
    ``bf16`` as given. ``runtime`` is already resolved."""
    import torch

    from rafss_core.segmentation.devices import check_precision
    from rafss_core.segmentation.devices import resolve_precision as by_device

    name = check_precision(name)
    if name == "auto" and runtime == "openvino":
        return "bf16" if native_bf16() else "fp32"
    return by_device(name, torch.device(device))


@dataclass
class TorchRuntime:
    """The torch network, with bf16 autocast for ``precision == "bf16"``."""

    net: Any
    precision: str = "fp32"
    name: str = "torch"

    @property
    def prompt_encoder(self) -> Any:
        return self.net.prompt_encoder

    def parameters(self) -> Any:
        return self.net.parameters()

    def _autocast(self) -> Any:
        import torch

        device = next(self.net.parameters()).device.type
        return torch.autocast(device, torch.bfloat16, enabled=self.precision == "bf16")

    def image_encoder(self, frames: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.net.image_encoder(frames).float()

    def mask_decoder(self, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            logits, iou = self.net.mask_decoder(**kwargs)
        return logits.float(), iou.float()


def _positional_decoder(decoder: Any) -> Any:
    """SAM's mask decoder with positional inputs and single-mask output, for conversion."""
    import torch

    class PositionalDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = decoder

        def forward(self, features: Any, image_pe: Any, sparse: Any, dense: Any) -> Any:
            return self.decoder(image_embeddings=features, image_pe=image_pe,
                                sparse_prompt_embeddings=sparse,
                                dense_prompt_embeddings=dense, multimask_output=False)

    return PositionalDecoder().eval()


@dataclass
class OpenVinoRuntime:
    """LiteMedSAM's encoder and decoder compiled by OpenVINO for this CPU."""

    net: Any  # the torch network: its prompt encoder runs in torch
    encoder: Any  # openvino CompiledModel
    decoder: Any
    precision: str = "fp32"
    name: str = "openvino"

    def __post_init__(self) -> None:
        self._local = threading.local()  # an infer request is not thread-safe: one a thread

    def _request(self, model: Any) -> Any:
        requests = self._local.__dict__.setdefault("requests", {})
        if id(model) not in requests:
            requests[id(model)] = model.create_infer_request()
        return requests[id(model)]

    @property
    def prompt_encoder(self) -> Any:
        return self.net.prompt_encoder

    def parameters(self) -> Any:
        return self.net.parameters()  # where inputs go: the CPU

    def image_encoder(self, frames: torch.Tensor) -> torch.Tensor:
        import torch

        out = [torch.from_numpy(self._request(self.encoder).infer({0: f[None].contiguous().numpy()},
                                                   share_inputs=True)[0].copy())
               for f in frames.float()]
        return torch.cat(out)

    def mask_decoder(self, *, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                     sparse_prompt_embeddings: torch.Tensor,
                     dense_prompt_embeddings: torch.Tensor,
                     multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        if multimask_output:
            raise ValueError("the OpenVINO decoder is compiled for single-mask output")
        # compiled for one image embedding per prompt (SAM repeats a single one itself)
        image_embeddings = image_embeddings.expand(len(sparse_prompt_embeddings), -1, -1, -1)
        result = self._request(self.decoder).infer({
            0: image_embeddings.float().contiguous().numpy(), 1: image_pe.float().numpy(),
            2: sparse_prompt_embeddings.float().numpy(),
            3: dense_prompt_embeddings.float().contiguous().numpy()}, share_inputs=True)
        return torch.from_numpy(result[0].copy()), torch.from_numpy(result[1].copy())


def _convert(net: Any) -> tuple[Any, Any]:
    """The encoder (batch 1) and the decoder (any batch) as OpenVINO models, from torch."""
    import openvino as ov
    import torch

    frames = torch.zeros(1, 3, 256, 256)
    with torch.inference_mode():
        features = net.image_encoder(frames)
        sparse, dense = net.prompt_encoder(points=None, boxes=torch.tensor([[[8.0, 8, 64, 64]]]),
                                           masks=None)
    image_pe = net.prompt_encoder.get_dense_pe()
    with warnings.catch_warnings():  # tracing notes shape checks it records as constants
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        encoder = ov.convert_model(net.image_encoder, example_input=frames)
        decoder = ov.convert_model(
            _positional_decoder(net.mask_decoder),
            example_input=(features, image_pe, sparse, dense),
            input=[ov.PartialShape([-1, 256, 64, 64]), ov.PartialShape([1, 256, 64, 64]),
                   ov.PartialShape([-1, -1, 256]), ov.PartialShape([-1, 256, 64, 64])])
    return encoder, decoder


def _save(models: tuple[Any, Any], target: Path) -> None:
    """Write the IR to ``target`` whole or not at all (a temporary folder renamed into place)."""
    import openvino as ov

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, model in zip(("encoder", "decoder"), models, strict=True):
            ov.save_model(model, staging / f"{name}.xml", compress_to_fp16=False)
        try:
            staging.rename(target)
        except OSError:  # another process saved it first
            if not (target / "decoder.xml").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_CONVERTED: dict[str, tuple[Any, Any]] = {}  # IR name -> (encoder, decoder), per process


def _ir(net: Any, digest: str, compiled_dir: Path | None) -> tuple[Any, Any]:
    """The encoder and decoder as OpenVINO models: read from ``compiled_dir`` when converted
    there before, else converted now (about 14 s on 2 cores) and saved there; held for the
    process either way."""
    import openvino as ov
    from tqdm import tqdm

    name = f"litemedsam-{digest[:12]}-openvino-{ov.__version__.split('-')[0]}"
    folder = compiled_dir / name if compiled_dir is not None else None
    saved = folder is not None and (folder / "decoder.xml").exists()
    if name not in _CONVERTED:
        if saved:
            core = ov.Core()
            _CONVERTED[name] = (core.read_model(folder / "encoder.xml"),
                                core.read_model(folder / "decoder.xml"))
        else:
            with tqdm(total=1, desc="convert LiteMedSAM to OpenVINO (once)",
                      unit="model") as bar:
                _CONVERTED[name] = _convert(net)
                bar.update()
    if folder is not None and not saved:
        try:
            _save(_CONVERTED[name], folder)
        except OSError as exc:  # a read-only folder: this process keeps its copy
            log.warning("cannot save the OpenVINO model under %s (%s); it is converted "
                        "again in each new process", folder.parent, exc)
    return _CONVERTED[name]


def build_openvino(net: Any, digest: str, precision: str,
                   compiled_dir: Path | None) -> OpenVinoRuntime:
    """The OpenVINO runtime of ``net`` (checkpoint ``digest``), compiled for this CPU; the IR
    is converted once into ``compiled_dir`` and reused (see :func:`_ir`)."""
    import openvino as ov

    encoder, decoder = _ir(net, digest, compiled_dir)
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
              "PERFORMANCE_HINT": "LATENCY"}
    return OpenVinoRuntime(net, core.compile_model(encoder, "CPU", config),
                           core.compile_model(decoder, "CPU", config), precision)


def build_runtime(net: Any, digest: str, runtime: str, precision: str, device: str = "cpu",
                  compiled_dir: Path | None = None) -> TorchRuntime | OpenVinoRuntime:
    """LiteMedSAM on ``runtime`` (``auto``, ``torch`` or ``openvino``) in ``precision``
    (``auto``, ``fp32`` or ``bf16``; see :func:`resolve_precision`).

    Raises
    ------
    RuntimeChoiceError
        The runtime is unknown, not installed, or cannot run on ``device``.
    DeviceError
        The precision is unknown.
    """
    name = resolve_runtime(runtime, device)
    precision = resolve_precision(precision, name, device)
    if name == "openvino":
        return build_openvino(net, digest, precision, compiled_dir)
    return TorchRuntime(net, precision)
