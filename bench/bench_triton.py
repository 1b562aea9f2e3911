"""Triton serving benchmark: throughput and latency percentiles, beside in-process ONNX Runtime.

Three experiments (``--experiment``), each on the embedded tritonserver (cpu target:
python backend + ONNX Runtime) started here on free ports, one server at a time:

- ``main`` (default): concurrency 1, 2, 4, 8 with dynamic batching on and off (two
  repositories, two servers) and in-process ONNX Runtime (same ONNX file, same thread budget:
  ``intra_op_num_threads`` as in the served config);
- ``queue-delay``: the dynamic batcher's ``max_queue_delay_microseconds`` sweep;
- ``run-batch``: in-process ONNX Runtime cost per window at batch 1, 2, 4, 8, and the
  python backend's ``run_batch_size`` (windows per ORT run inside one merged batch) sweep;
- ``server-time``: at concurrency 1, Triton's per-phase statistics (queue, compute input /
  infer / output) beside in-process ORT, for several intra-op thread counts;
- ``encoding``: served output encodings (uint8 mask probabilities vs float32
  probabilities vs float32 logits): bytes per response on the wire and latency.

The client is one ``tritonclient.grpc.aio`` client per run (created at start, closed at
the end) with ``concurrency`` workers, each sending one window (batch 1) at a time.
Latency percentiles are over requests started after the warm-up. Systems are measured
interleaved (every system at a level, then the next level; ``--rounds`` times, pooled)
so that load from other processes on a shared machine hits all of them alike.

    .venv/bin/python bench/bench_triton.py --experiment main --out /tmp/bench_main.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as grpcaio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import report_path
from export.repository import RepoSettings, write_repository
from export.specs import ENCODINGS, Encoding, output_specs
from ultramn.contract import CONTRACT
from ultramn.serving.build import onnx_model_path
from ultramn.serving.embedded import EmbeddedTriton, running_triton

IN = CONTRACT.inputs[0]
#: phases of Triton's inference statistics (each a cumulative count and nanoseconds)
STAT_PHASES = ("success", "queue", "compute_input", "compute_infer", "compute_output")
REPO_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "ultramn.pt"


@dataclass
class Result:
    """One load level of one system."""

    system: str
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: np.ndarray
    response_bytes: int = 0
    #: Triton's ``(count, ns)`` per phase (:data:`STAT_PHASES`) over the measured span only,
    #: like the client latencies (warm-up excluded); empty for in-process runs
    server_phases: dict[str, tuple[int, int]] = field(default_factory=dict)

    def server_phase_ms(self, phase: str) -> float:
        """Mean milliseconds per served request in ``phase`` (``nan`` without statistics)."""
        count = self.server_phases.get("success", (0, 0))[0]
        return self.server_phases[phase][1] / count / 1e6 if count and phase in self.server_phases else float("nan")

    @property
    def server_ms(self) -> float:
        """Mean time inside the server per request (Triton statistics), ms."""
        return self.server_phase_ms("success")

    @property
    def throughput(self) -> float:
        """Windows per second."""
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        """Latency percentile in ms."""
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")


def window(seed: int = 0) -> np.ndarray:
    """One random window ``[1, *dims]``."""
    return np.random.default_rng(seed).random((1, *IN.dims), dtype=np.float32)


# --------------------------------------------------------------------------- load generators


async def _triton_load(url: str, concurrency: int, warmup: float, duration: float, names: list[str]) -> Result:
    client = grpcaio.InferenceServerClient(url)
    latencies: list[float] = []
    nbytes: list[int] = []
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + duration

    async def server_stats() -> dict[str, tuple[int, int]]:
        raw = await client.get_inference_statistics(CONTRACT.name, as_json=True)
        stats = raw["model_stats"][0]["inference_stats"]
        return {k: (int(stats.get(k, {}).get("count", 0)), int(stats.get(k, {}).get("ns", 0))) for k in STAT_PHASES}

    async def measured_span() -> dict[str, tuple[int, int]]:
        """The server's statistics between the end of the warm-up and the end of the run."""
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        before = await server_stats()
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        after = await server_stats()
        return {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in STAT_PHASES}

    async def worker(seed: int) -> None:
        inp = grpcaio.InferInput(IN.name, [1, *IN.dims], IN.triton_datatype)
        inp.set_data_from_numpy(window(seed))
        outs = [grpcaio.InferRequestedOutput(n) for n in names]
        while (t0 := time.perf_counter()) < end:
            result = await client.infer(CONTRACT.name, [inp], outputs=outs)
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= end:
                latencies.append(t1 - t0)
                if not nbytes:
                    nbytes.append(sum(result.as_numpy(n).nbytes for n in names))

    try:
        span = asyncio.ensure_future(measured_span())
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        phases = await span
    finally:
        await client.close()
    return Result("", concurrency, len(latencies), duration, np.array(latencies) * 1e3, nbytes[0] if nbytes else 0, phases)


def triton_load(url: str, concurrency: int, warmup: float, duration: float, names: list[str], system: str) -> Result:
    """Closed-loop load on a served model."""
    result = asyncio.run(_triton_load(url, concurrency, warmup, duration, names))
    result.system = system
    return result


def ort_session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session set up as the served python backend sets up its own (intra-op ``threads``, 1 inter-op)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def inprocess_load(onnx_path: Path, concurrency: int, warmup: float, duration: float, threads: int) -> Result:
    """The same closed loop against one in-process ONNX Runtime session shared by ``concurrency`` threads."""
    sess = ort_session(onnx_path, threads)
    sess.run(None, {IN.name: window()})
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + duration

    def worker(seed: int) -> None:
        x = window(seed)
        while (t0 := time.perf_counter()) < end:
            sess.run(None, {IN.name: x})
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= end:
                with lock:
                    latencies.append(t1 - t0)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return Result("in-process ORT", concurrency, len(latencies), duration, np.array(latencies) * 1e3)


# --------------------------------------------------------------------------- setup


def build_onnx(work: Path, checkpoint: Path | None, encoding: Encoding = "probs_u8") -> Path:
    """Export the benchmark model: ``models/ultramn.pt``, or without it an untrained unet3d of
    the shipped size (``build_model("unet3d")``'s defaults)."""
    out = work / f"model_{encoding}.onnx"
    if out.is_file():
        return out
    import torch

    from export.onnx_export import export_onnx, load_model
    from ultramn.model import build_model

    if checkpoint is not None and checkpoint.is_file():
        model, _ = load_model(checkpoint)
    else:
        torch.manual_seed(0)
        model = build_model("unet3d").eval()
    report = export_onnx(model, out, encoding=encoding, checkpoint=checkpoint if checkpoint and checkpoint.is_file() else None)
    print(f"# exported {out.name}: {report.parity.describe() if report.parity else ''}", flush=True)
    return out


def make_repo(work: Path, name: str, onnx: Path, settings: RepoSettings) -> Path:
    """A cpu repository at ``work/name`` serving ``onnx`` with ``settings``."""
    repo = work / name
    write_repository(repo, settings)
    target = onnx_model_path(repo)
    target.unlink(missing_ok=True)
    os.link(onnx, target) if onnx.stat().st_dev == target.parent.stat().st_dev else target.write_bytes(onnx.read_bytes())
    return repo


Runner = Callable[[int], Result]


def merge(results: list[Result]) -> Result:
    """Pool the rounds of one system at one concurrency."""
    first = results[0]
    return Result(
        first.system,
        first.concurrency,
        sum(r.requests for r in results),
        sum(r.seconds for r in results),
        np.concatenate([r.latencies_ms for r in results]),
        first.response_bytes,
        {k: (sum(r.server_phases[k][0] for r in results), sum(r.server_phases[k][1] for r in results)) for k in first.server_phases},
    )


def run_interleaved(systems: dict[str, Runner], levels: list[int], rounds: int) -> list[Result]:
    """Every system at every level, ``rounds`` times, interleaved so that load from other processes
    on a shared machine hits all systems alike; rounds are pooled."""
    raw: dict[tuple[str, int], list[Result]] = {}
    for k in range(rounds):
        for c in levels:
            for name, runner in systems.items():
                r = runner(c)
                r.system = name
                raw.setdefault((name, c), []).append(r)
                print(f"round {k + 1} {name:34s} c={c}: {r.throughput:6.2f}/s p50 {r.pct(50):7.1f} ms", flush=True)
    return [merge(raw[(name, c)]) for name in systems for c in levels]


def triton_runner(server: EmbeddedTriton, args: argparse.Namespace, names: list[str]) -> Runner:
    """Closed-loop gRPC load on ``server`` at a given concurrency (also the server-side time per request)."""

    def run(c: int) -> Result:
        return triton_load(server.grpc_url, c, args.warmup, args.duration, names, "")

    return run


def start_servers(stack: contextlib.ExitStack, repos: dict[str, Path]) -> dict[str, EmbeddedTriton]:
    """Start one server per repository (they idle while another is measured)."""
    return {name: stack.enter_context(running_triton(repo, [CONTRACT.name])) for name, repo in repos.items()}


def machine() -> str:
    """CPU model, cores, load and library versions."""
    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as fh:
        cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    load = os.getloadavg()
    return (
        f"{cpu}, {os.cpu_count()} cores visible, {platform.platform()}, load avg before run "
        f"{load[0]:.2f}; onnxruntime {ort.__version__}, tritonserver 2.51 (nvidia-pytriton 0.7.0)"
    )


def table(results: list[Result], baseline: dict[int, float] | None = None) -> str:
    """Markdown table of results (ratio column vs ``baseline`` throughput per concurrency)."""
    head = "| system | concurrency | windows/s | p50 ms | p95 ms | p99 ms |" + (" vs in-process |" if baseline else "")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        ratio = ""
        if baseline:
            ratio = f" {r.throughput / baseline[r.concurrency]:.2f}x |" if r.concurrency in baseline else " |"
        rows.append(f"| {r.system} | {r.concurrency} | {r.throughput:.2f} | {r.pct(50):.1f} | {r.pct(95):.1f} | {r.pct(99):.1f} |{ratio}")
    return "\n".join(rows)


# --------------------------------------------------------------------------- experiments


SYSTEM_ON, SYSTEM_OFF, SYSTEM_ORT = "Triton, dynamic batching on", "Triton, dynamic batching off", "in-process ORT"


def experiment_main(args: argparse.Namespace, work: Path) -> str:
    onnx = build_onnx(work, args.checkpoint)
    names = [o.name for o in CONTRACT.served_outputs]
    delay = args.queue_delay_us if args.queue_delay_us is not None else RepoSettings.max_queue_delay_us
    on = RepoSettings(target="cpu", intra_op_threads=args.threads, max_queue_delay_us=delay)
    off = RepoSettings(target="cpu", intra_op_threads=args.threads, dynamic_batching=False)
    with contextlib.ExitStack() as stack:
        servers = start_servers(stack, {"on": make_repo(work, "batching_on", onnx, on), "off": make_repo(work, "batching_off", onnx, off)})
        systems: dict[str, Runner] = {
            SYSTEM_ORT: lambda c: inprocess_load(onnx, c, args.warmup, args.duration, args.threads),
            SYSTEM_ON: triton_runner(servers["on"], args, names),
            SYSTEM_OFF: triton_runner(servers["off"], args, names),
        }
        results = run_interleaved(systems, args.concurrency, args.rounds)
    base = {r.concurrency: r.throughput for r in results if r.system == SYSTEM_ORT}
    by = {(r.system, r.concurrency): r.throughput for r in results}
    lines = [table(results, base), ""]
    c4, c8 = 4, max(args.concurrency)
    if (SYSTEM_ON, c4) in by and c4 in base:
        ratio = by[(SYSTEM_ON, c4)] / base[c4]
        verdict = "met" if ratio >= 0.9 else "MISSED"
        lines.append(f"- Triton (batching on) vs in-process at concurrency {c4}: **{ratio:.2f}x** (goal >= 0.9x: {verdict})")
    if (SYSTEM_OFF, c8) in by:
        ratio = by[(SYSTEM_ON, c8)] / by[(SYSTEM_OFF, c8)]
        verdict = "met" if ratio >= 1.2 else "MISSED"
        lines.append(f"- dynamic batching on vs off at concurrency {c8}: **{ratio:.2f}x** (goal >= 1.2x: {verdict})")
    return "\n".join(lines)


def sweep(args: argparse.Namespace, work: Path, onnx: Path, variants: dict[str, RepoSettings]) -> list[Result]:
    """One cpu server per labelled settings variant, all serving ``onnx``; interleaved load on each."""
    names = [o.name for o in CONTRACT.served_outputs]
    repos = {label: make_repo(work, f"variant_{i}", onnx, settings) for i, (label, settings) in enumerate(variants.items())}
    with contextlib.ExitStack() as stack:
        servers = start_servers(stack, repos)
        return run_interleaved({k: triton_runner(v, args, names) for k, v in servers.items()}, args.concurrency, args.rounds)


def experiment_queue_delay(args: argparse.Namespace, work: Path) -> str:
    onnx = build_onnx(work, args.checkpoint)
    variants = {
        f"max_queue_delay {d} us": RepoSettings(target="cpu", intra_op_threads=args.threads, max_queue_delay_us=d)
        for d in args.queue_delays
    }
    return table(sweep(args, work, onnx, variants))


def experiment_server_time(args: argparse.Namespace, work: Path) -> str:
    """Concurrency 1: where a served request's time goes (Triton's statistics) beside in-process ORT, per thread count."""
    onnx = build_onnx(work, args.checkpoint)
    names = [o.name for o in CONTRACT.served_outputs]
    rows = [
        "| intra-op threads | in-process ORT p50 ms | served p50 ms (client) | queue ms | compute input ms | compute infer ms "
        "| compute output ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for threads in args.thread_sweep:
        repo = make_repo(work, f"threads_{threads}", onnx, RepoSettings(target="cpu", intra_op_threads=threads))
        local = inprocess_load(onnx, 1, args.warmup, args.duration, threads)
        with running_triton(repo, [CONTRACT.name]) as server:
            served = triton_load(server.grpc_url, 1, args.warmup, args.duration, names, "")
        phase = {k: served.server_phase_ms(k) for k in STAT_PHASES}
        rows.append(
            f"| {threads} | {local.pct(50):.1f} | {served.pct(50):.1f} | {phase['queue']:.1f} | {phase['compute_input']:.1f} "
            f"| {phase['compute_infer']:.1f} | {phase['compute_output']:.1f} |"
        )
        print(rows[-1], flush=True)
    return "\n".join(rows)


def batch_cost(onnx_path: Path, threads: int, batches: list[int], repeats: int = 24) -> str:
    """Markdown table: in-process ORT milliseconds per batch and per window at each batch size."""
    sess = ort_session(onnx_path, threads)
    rows = ["| batch | ms / batch (median) | ms / window | vs batch 1 |", "|---|---|---|---|"]
    first = 0.0
    for b in batches:
        x = np.concatenate([window(i) for i in range(b)])
        for _ in range(2):
            sess.run(None, {IN.name: x})
        times = []
        for _ in range(max(4, repeats // b)):
            t0 = time.perf_counter()
            sess.run(None, {IN.name: x})
            times.append(time.perf_counter() - t0)
        per_window = float(np.median(times)) * 1e3 / b
        first = first or per_window
        rows.append(f"| {b} | {per_window * b:.1f} | {per_window:.1f} | {per_window / first:.2f}x |")
    return "\n".join(rows)


def experiment_run_batch(args: argparse.Namespace, work: Path) -> str:
    onnx = build_onnx(work, args.checkpoint)
    cost = batch_cost(onnx, args.threads, [1, 2, 4, 8])
    print(cost, flush=True)
    variants = {
        f"run_batch_size {n or 'whole batch'}": RepoSettings(target="cpu", intra_op_threads=args.threads, run_batch_size=n)
        for n in args.run_batch_sizes
    }
    results = sweep(args, work, onnx, variants)
    return "In-process ONNX Runtime, one run per batch:\n\n" + cost + "\n\nServed, dynamic batching on:\n\n" + table(results)


def experiment_encoding(args: argparse.Namespace, work: Path) -> str:
    specs = {e: output_specs(e) for e in args.encodings}
    repos = {
        e: make_repo(
            work, f"enc_{e}", build_onnx(work, args.checkpoint, e), RepoSettings(target="cpu", intra_op_threads=args.threads, encoding=e)
        )
        for e in args.encodings
    }
    with contextlib.ExitStack() as stack:
        servers = start_servers(stack, repos)
        systems = {e: triton_runner(servers[e], args, [s.name for s in specs[e]]) for e in args.encodings}
        results = run_interleaved(systems, args.concurrency, args.rounds)
    rows = [
        "| encoding | outputs | bytes/response | concurrency | windows/s | p50 ms | p99 ms | mean ms | in server ms | outside server ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        outs = ", ".join(f"{s.name} {s.dtype.removeprefix('TYPE_')}" for s in specs[r.system])
        rows.append(
            f"| {r.system} | {outs} | {r.response_bytes:,} | {r.concurrency} | {r.throughput:.2f} "
            f"| {r.pct(50):.1f} | {r.pct(99):.1f} | {r.latencies_ms.mean():.1f} | {r.server_ms:.1f} "
            f"| {r.latencies_ms.mean() - r.server_ms:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", choices=["main", "queue-delay", "run-batch", "server-time", "encoding"], default="main")
    p.add_argument("--checkpoint", type=Path, default=REPO_CHECKPOINT, help="default models/ultramn.pt; untrained unet3d if absent")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--queue-delays", type=int, nargs="+", default=[0, 1000, 2000, 5000, 10000])
    p.add_argument("--queue-delay-us", type=int, default=None, help="main: the batching-on repository's delay (default: config's)")
    p.add_argument("--run-batch-sizes", type=int, nargs="+", default=[0, 1, 2], help="run-batch: values to sweep (0: whole batch)")
    p.add_argument("--thread-sweep", type=int, nargs="+", default=[0, 2, 1], help="server-time: intra-op thread counts")
    p.add_argument("--encodings", nargs="+", choices=ENCODINGS, default=list(ENCODINGS))
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads, served and in-process (0: one per core)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions, pooled")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--work", type=Path, default=None, help="folder for ONNX files and repositories (default: temporary)")
    p.add_argument("--out", type=report_path, default=None, help="also write the markdown here")
    args = p.parse_args(argv)
    header = f"machine: {machine()}\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}\n"
    print(header, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        experiments = {
            "main": experiment_main,
            "queue-delay": experiment_queue_delay,
            "run-batch": experiment_run_batch,
            "server-time": experiment_server_time,
            "encoding": experiment_encoding,
        }
        run = experiments[args.experiment]
        text = run(args, work)
    print(text)
    if args.out:
        args.out.write_text(header + "\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
