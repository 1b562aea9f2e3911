"""``python -m export {onnx,build,repo,check}``: see :mod:`export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.repository import DEFAULT_ROOT, TARGETS, RepoSettings, drift, write_repository
from export.specs import ENCODINGS, MIN_OPSET
from ultramn.contract import SHIPPED_CHECKPOINT


def _cmd_onnx(args: argparse.Namespace) -> int:
    from export.onnx_export import export_onnx, load_model

    model, _ = load_model(args.checkpoint)
    report = export_onnx(
        model, args.out, fp16=args.fp16, encoding=args.encoding, opset=args.opset, optimize=not args.no_optimize, checkpoint=args.checkpoint
    )
    print(f"wrote {report.path} ({report.bytes / 1e6:.1f} MB, opset {report.opset}, encoding {report.encoding}, fp16={report.fp16})")
    opt = report.optimisation
    if "nodes_before" in opt:
        print(
            f"offline optimisation: nodes {opt['nodes_before']} -> {opt['nodes_after']}, batch-1 latency "
            f"{opt['latency_ms_batch1_before']} -> {opt['latency_ms_batch1_after']} ms, kept={opt['kept']}"
        )
    elif opt.get("note"):
        print(f"offline optimisation: {opt['note']}")
    print(report.parity.describe() if report.parity else "parity: not checkable on this machine (see the build record)")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from export.onnx_export import export_onnx, load_model

    if not args.checkpoint.is_file():
        print(f"error: checkpoint {args.checkpoint} does not exist (train one, or pass --checkpoint)", file=sys.stderr)
        return 2
    model, _ = load_model(args.checkpoint)
    for target in args.targets:
        out = args.root / target / "ultramn" / "1" / "model.onnx"
        report = export_onnx(model, out, checkpoint=args.checkpoint)
        print(f"{target}: wrote {out}; {report.parity.describe() if report.parity else ''}")
    if args.fp16:
        out = args.root / "gpu" / "ultramn" / "1" / "model_fp16.onnx"
        report = export_onnx(model, out, fp16=True, checkpoint=args.checkpoint)
        print(f"gpu: wrote {out} (float16 variant)")
    return 0


def _cmd_repo(args: argparse.Namespace) -> int:
    settings = RepoSettings(
        target=args.target,
        dynamic_batching=not args.no_dynamic_batching,
        max_queue_delay_us=args.max_queue_delay_us if args.max_queue_delay_us is not None else RepoSettings.max_queue_delay_us,
        instances=args.instances,
        intra_op_threads=args.intra_op_threads,
        run_batch_size=args.run_batch_size,
        encoding=args.encoding,
    )
    for path in write_repository(args.out, settings):
        print(f"wrote {path}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    problems = drift(args.root)
    if problems:
        print("\n".join(problems))
        print(f"error: {args.root} drifted from the contract; regenerate with `python -m export repo --target <t> --out {args.root}/<t>`")
        return 1
    print(f"{args.root}: configs match the contract")
    return 0


def _opset(text: str) -> int:
    """An ``--opset`` value: an integer of at least :data:`MIN_OPSET` (argparse's exit 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < MIN_OPSET:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_OPSET}, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    onnx = sub.add_parser("onnx", help="export a checkpoint to ONNX and check parity with ONNX Runtime")
    onnx.add_argument("--checkpoint", type=Path, required=True)
    onnx.add_argument("--out", type=Path, required=True)
    onnx.add_argument("--fp16", action="store_true", help="float16 weights and compute (float32 I/O), for GPUs")
    onnx.add_argument("--encoding", choices=ENCODINGS, default="probs_u8")
    onnx.add_argument("--opset", type=_opset, default=MIN_OPSET, help=f"ONNX opset (at least {MIN_OPSET})")
    onnx.add_argument("--no-optimize", action="store_true", help="skip ONNX Runtime's offline graph optimisation")
    onnx.set_defaults(func=_cmd_onnx)

    build = sub.add_parser("build", help="the repository's build step: checkpoint -> triton_models/<target>/ultramn/1/model.onnx")
    build.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    build.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    build.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    build.add_argument("--fp16", action="store_true", help="also write gpu/ultramn/1/model_fp16.onnx")
    build.set_defaults(func=_cmd_build)

    repo = sub.add_parser("repo", help="write a target's config.pbtxt (and model.py) from the contract")
    repo.add_argument("--target", choices=TARGETS, required=True)
    repo.add_argument("--out", type=Path, required=True)
    repo.add_argument("--no-dynamic-batching", action="store_true")
    repo.add_argument("--max-queue-delay-us", type=int, default=None)
    repo.add_argument("--instances", type=int, default=1)
    repo.add_argument("--intra-op-threads", type=int, default=0)
    repo.add_argument(
        "--run-batch-size", type=int, default=RepoSettings.run_batch_size, help="cpu: windows per ONNX Runtime run (0: whole merged batch)"
    )
    repo.add_argument("--encoding", choices=ENCODINGS, default="probs_u8")
    repo.set_defaults(func=_cmd_repo)

    check = sub.add_parser("check", help="fail when triton_models/ drifted from the contract")
    check.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    check.set_defaults(func=_cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code: 2 for bad input (a missing or unreadable checkpoint, a
    bad option value), 1 when the export's parity check fails; one ``error:`` line, no traceback."""
    from export.onnx_export import ParityError
    from ultramn.model.checkpoint import CheckpointError

    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ParityError as exc:
        print(f"error: the exported graph does not match torch, nothing written for it: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
