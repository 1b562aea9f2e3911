"""Batch processing of many clips: a folder, an archive (ZIP/TAR) or a DICOMDIR.

:mod:`.discover` finds the clips (by content, with the gateway's decoders' sniffing),
:mod:`.runner` analyses them with bounded concurrency through an :class:`~.types.Analyzer`
(:mod:`.gateway_client` for a running gateway; ``gateway.batch_direct`` straight to Triton),
:mod:`.state` makes a batch resumable, :mod:`.outputs` writes ``results.jsonl``,
``summary.csv`` and the masks.
"""

from ultramn.batch.discover import Clip, Discovery, discover
from ultramn.batch.runner import BatchReport, run_batch
from ultramn.batch.types import Analyzer, ClipAnalysis, ClipError

__all__ = ["Analyzer", "BatchReport", "Clip", "ClipAnalysis", "ClipError", "Discovery", "discover", "run_batch"]
