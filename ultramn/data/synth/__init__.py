"""Realistic synthetic dynamic ultrasound clips of the median nerve (``ultramn synth``).

Pipeline, one module per stage: :mod:`.anatomy` (per-participant anatomy) ->
:mod:`.scene` / :mod:`.tissue` (echogenicity, attenuation, nerve mask in tissue
coordinates) -> :mod:`.motion` (per-frame deformation) -> :mod:`.bmode` with :mod:`.psf`
(scatterers x echogenicity, pymust PSF, envelope, log compression) and :mod:`.quality`
(artefacts) -> :mod:`.generator` (clips, dataset, manifest) and :mod:`.preview`.
"""

from ultramn.data.synth.config import SynthConfig
from ultramn.data.synth.generator import ClipSpec, generate_clip, generate_dataset

__all__ = ["ClipSpec", "SynthConfig", "generate_clip", "generate_dataset"]
