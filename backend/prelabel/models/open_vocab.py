"""Open-vocabulary detectors beyond Grounding DINO: OWLv2 and MM Grounding DINO / LLMDet."""

from __future__ import annotations

OWLV2_SPECS = ("random-tiny-owlv2", "random-full-owlv2")
MM_GDINO_SPECS = ("random-tiny-mm-grounding-dino", "random-full-mm-grounding-dino")
