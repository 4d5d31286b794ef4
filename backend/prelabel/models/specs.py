"""Model specs that need no torch to reason about: the defaults and the table of random-weight specs.

A spec names a model: a hub id, a local folder written by ``save_pretrained``, an official checkpoint
file, or one of the random-weight specs below (the real architectures, randomly initialised, for offline
tests and honest timings; their outputs mean nothing).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from prelabel.core.errors import ModelLoadError, ModelUnavailable

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_SEGMENTER = "facebook/sam-vit-base"

# spec -> (kind, what it builds). "both" specs name a detector and a segmenter of that size.
RANDOM_SPECS: dict[str, tuple[str, str]] = {
    "random-tiny": ("both", "Grounding DINO / SAM, tiny configs (tests)"),
    "random-full": ("both", "grounding-dino-tiny / sam-vit-base shapes (timings)"),
    "random-full-vit-h": ("segmenter", "sam-vit-huge shapes"),
    "random-full-slimsam-50": ("segmenter", "SlimSAM uniform-50 shapes"),
    "random-full-slimsam-77": ("segmenter", "SlimSAM uniform-77 shapes"),
    "random-full-sam2-tiny": ("segmenter", "SAM 2.1 Hiera-tiny shapes"),
    "random-full-sam2-small": ("segmenter", "SAM 2.1 Hiera-small shapes"),
    "random-tiny-sam2": ("segmenter", "SAM 2.1, tiny config (tests)"),
    "random-tiny-sam3": ("both", "SAM 3 concept model (detector) or its tracker (segmenter), tiny config"),
    "random-full-sam3": ("both", "SAM 3 (facebook/sam3 shapes: ViT-L/14, 1008 px)"),
    "random-tiny-owlv2": ("detector", "OWLv2, tiny config"),
    "random-full-owlv2": ("detector", "OWLv2 ViT-B/16 shapes, 960 px"),
    "random-tiny-mm-grounding-dino": ("detector", "MM Grounding DINO / LLMDet, tiny config"),
    "random-full-mm-grounding-dino": ("detector", "MM Grounding DINO Swin-T shapes"),
    "random-tiny-omdet-turbo": ("detector", "OmDet-Turbo, tiny config"),
    "random-full-omdet-turbo": ("detector", "OmDet-Turbo Swin-T shapes, 640 px"),
    "random-tiny-sam-hq": ("segmenter", "SAM-HQ, tiny config (tests)"),
    "random-full-sam-hq": ("segmenter", "SAM-HQ ViT-B shapes (sam-hq-vit-base)"),
    "random-tiny-sam2-video": ("tracker", "SAM 2.1 video tracker, tiny config (tests)"),
    "random-full-sam2-tiny-video": ("tracker", "SAM 2.1 video tracker, Hiera-tiny shapes (timings)"),
}
DEFAULT_TRACKER = "facebook/sam2.1-hiera-tiny"

# config.json model_type -> detector family
MODEL_TYPES = {
    "grounding-dino": "grounding-dino",
    "mm-grounding-dino": "mm-grounding-dino",
    "owlv2": "owlv2",
    "omdet-turbo": "omdet-turbo",
    "sam3": "sam3",
    "sam3_video": "sam3",  # facebook/sam3: detector and tracker in one checkpoint
}
RANDOM_DETECTOR_FAMILIES = {
    "random-tiny": "grounding-dino", "random-full": "grounding-dino",
    "random-tiny-mm-grounding-dino": "mm-grounding-dino", "random-full-mm-grounding-dino": "mm-grounding-dino",
    "random-tiny-owlv2": "owlv2", "random-full-owlv2": "owlv2",
    "random-tiny-omdet-turbo": "omdet-turbo", "random-full-omdet-turbo": "omdet-turbo",
    "random-tiny-sam3": "sam3", "random-full-sam3": "sam3",
}
TEXT_THRESHOLD_FAMILIES = ("grounding-dino", "mm-grounding-dino")
"""The families with a text threshold (Grounding DINO's per-token cut; in prelabel a floor under every label's cut)."""


def is_random(spec: str | None) -> bool:
    """Whether a spec builds random weights (its outputs are not predictions)."""
    return spec in RANDOM_SPECS


def random_specs(kind: str) -> tuple[str, ...]:
    """The random specs usable as a ``detector``, a ``segmenter`` or a ``tracker``."""
    return tuple(spec for spec, (spec_kind, _) in RANDOM_SPECS.items() if spec_kind in (kind, "both"))


def runtime_model_id(spec: str, runtime: str = "torch", precision: str = "fp32") -> str:
    """The id a model reports: its spec, plus its runtime when it is not PyTorch (``spec+openvino``) and a reduced
    precision of that runtime (``spec+openvino-bf16``)."""
    if runtime == "torch":
        return spec
    return f"{spec}+{runtime}" + (f"-{precision}" if precision != "fp32" else "")


def model_type_of(spec: str) -> str | None:
    """The ``model_type`` in the ``config.json`` of a local folder, or of a hub id already in the local
    Hugging Face cache (None when neither is there)."""
    path = Path(spec).expanduser() / "config.json"
    if not path.is_file() and spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        cached = huggingface_hub.try_to_load_from_cache(spec, "config.json")
        path = Path(cached) if isinstance(cached, str) else path
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("model_type")


def preprocessor_folder(spec: str) -> Path:
    """The folder holding a model's ``preprocessor_config.json``: the spec itself when it is a local folder, else
    the hub download's (for the families whose preprocessing prelabel reads itself)."""
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return folder
    return Path(huggingface_hub.hf_hub_download(spec, "preprocessor_config.json")).parent


def detector_family(spec: str) -> str | None:
    """The detector family a spec builds: a random spec's, else that of its ``config.json``'s ``model_type``
    (a local folder, or a hub id in the local cache); None where that is not known before loading."""
    if is_random(spec):
        return RANDOM_DETECTOR_FAMILIES.get(spec)
    return MODEL_TYPES.get(model_type_of(spec) or "")


def has_text_threshold(detector: str) -> bool:
    """Whether a detector spec has a text threshold (:data:`TEXT_THRESHOLD_FAMILIES`). A hub id not downloaded
    yet is taken as Grounding DINO, the default family; loading it caches its config, which then decides."""
    family = detector_family(detector)
    return family in TEXT_THRESHOLD_FAMILIES or (family is None and not is_random(detector))


def segments_itself(detector: str | None) -> bool:
    """Whether a detector spec names a concept model that returns masks itself (SAM 3): then no separate
    segmenter is loaded, and clicks go to its own tracker."""
    return bool(detector) and detector_family(detector) == "sam3"


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def check_spec(kind: str, spec: str) -> None:
    """Fail at once, naming the fix, for a spec that cannot load: a missing path, something that is neither a
    path, a hub id (``org/name``) nor a ``random-*`` spec, or a hub id that is not cached while offline."""
    alternatives = (f"a local folder written by save_pretrained, a hub id such as "
                    f"{ {'detector': DEFAULT_DETECTOR, 'tracker': DEFAULT_TRACKER}.get(kind, DEFAULT_SEGMENTER)}, or one of "
                    f"{', '.join(random_specs(kind))} (random weights, offline)")
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or Path(spec).exists():
        if not Path(spec).expanduser().exists():
            raise ModelLoadError(f"the {kind} path {spec!r} does not exist; pass {alternatives}")
        return
    if not _HUB_ID.fullmatch(spec):
        raise ModelLoadError(f"unknown {kind} {spec!r}: not an existing path, a hub id (org/name) or a random "
                             f"spec; pass {alternatives}")
    _check_hub(kind, spec)


def _check_hub(kind: str, spec: str) -> None:
    """A hub id must be in the local cache, or the hub must answer (no minute of retries when it cannot)."""
    if isinstance(huggingface_hub.try_to_load_from_cache(spec, "config.json"), str):
        return
    hint = (f"download it where there is a network (`hf download {spec} --local-dir /models/{spec.split('/')[-1]}`) "
            f"and pass that local folder with --{kind} / PRELABEL_{kind.upper()}, or use random-tiny / random-full")
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise ModelUnavailable(f"the {kind} {spec!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                             f"set: {hint}")
    try:
        huggingface_hub.model_info(spec, timeout=10)
    except GatedRepoError:
        return  # from_pretrained says what to accept and which token to set
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(f"the {kind} {spec!r} is not a model on the Hugging Face hub (or it is private and "
                             f"no token is set: `hf auth login`)") from exc
    except HfHubHTTPError:
        return  # the hub answered; from_pretrained reports the rest
    except Exception as exc:  # connection errors of the HTTP client: the hub cannot be reached
        raise ModelUnavailable(f"the Hugging Face hub cannot be reached for the {kind} {spec!r} "
                             f"({exc.__class__.__name__}): {hint}") from exc
