"""Re-runs that must analyse clips done before again: the back end serves another model, or ``--redo``.

The CLI runs against a fake gateway (an httpx mock transport) that keeps its jobs by
``Idempotency-Key`` as the real one does, so a re-analysis that got an old job back shows;
one test runs ``--redo`` through the real gateway, one the ``--triton`` path, both on the real Triton."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.batch.archives import synth_frames
from tests.batch.test_batch_cli import KEY, gateway_url, read_outputs, run_cli, state_lines  # noqa: F401
from tests.serving.fixtures import ServedModel
from ultramn.batch import gateway_client
from ultramn.batch.outputs import record
from ultramn.batch.state import BatchState
from ultramn.serving.build import file_sha256


class FakeGateway:
    """Analyses every upload at once; serves model ``ultramn`` at ``version`` (``None``: says none).

    An upload whose ``Idempotency-Key`` it has seen gets that job back (as the real gateway does).
    Job ``n``'s masks are all ``n``. Upload number ``refuse_at`` is refused with a full disk."""

    def __init__(self, version: str | None = "1") -> None:
        self.version = version
        self.weights: str | None = None  # the served checkpoint's SHA-256, when the gateway knows it
        self.jobs: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> job
        self.uploads = 0
        self.refuse_at: int | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/health/live":
            return httpx.Response(200, json={"status": "live"})
        if path == "/health/ready":
            body = {"status": "ready", "model": "ultramn", "version": self.version, "weights": self.weights, "queue_depth": 0}
            return httpx.Response(200, json=body)
        if path == "/v1/analyses" and request.method == "GET":
            return httpx.Response(200, json={"items": []})
        if path == "/v1/analyses" and request.method == "POST":
            key = request.headers.get("Idempotency-Key", "")
            if key in self.jobs:
                return httpx.Response(200, json=self.jobs[key], headers={"Idempotent-Replayed": "true"})
            n = self.uploads
            self.uploads += 1
            if n == self.refuse_at:
                return httpx.Response(507, json={"error": {"code": "insufficient_storage", "message": "disk full"}})
            model = {"name": "ultramn", "version": self.version} | ({"weights": self.weights} if self.weights else {})
            result = {"plane": "TW", "plane_confidence": 0.9, "n_frames": 2, "model": model}
            self.jobs[key] = {"id": f"job{n}", "status": "succeeded", "result": result}
            return httpx.Response(200, json=self.jobs[key])
        if path.endswith("/masks.npz"):
            n = int(path.split("/")[-2].removeprefix("job"))
            buf = io.BytesIO()
            np.savez(buf, masks=np.full((2, 8, 8), n, np.uint8))
            return httpx.Response(200, content=buf.getvalue())
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    """The fake gateway, put behind every :class:`GatewayAnalyzer` the CLI makes."""
    gw = FakeGateway()
    real = gateway_client.GatewayAnalyzer

    def analyzer(base_url: str, **kwargs: Any) -> gateway_client.GatewayAnalyzer:
        return real(base_url, transport=httpx.MockTransport(gw.handle), poll_s=0.01, **kwargs)

    monkeypatch.setattr(gateway_client, "GatewayAnalyzer", analyzer)
    return gw


def exams(tmp_path: Path, n: int = 3) -> Path:
    src = tmp_path / "exams"
    src.mkdir()
    for i in range(n):
        np.save(src / f"c{i}.npy", np.full((2, 8, 8), i, np.uint8))
    return src


def batch(monkeypatch: pytest.MonkeyPatch, src: Path, out: Path, *extra: str) -> int:
    args = ["batch", str(src), "--out", str(out), "--gateway", "http://gateway", "--concurrency", "1", "--quiet", *extra]
    return run_cli(monkeypatch, *args)


def jobs_and_masks(out: Path) -> dict[str, tuple[str, str | None, int]]:
    """Clip -> (analysis id, model version, masks value) from results.jsonl and masks/, one line and row per clip."""
    results, rows = read_outputs(out)
    assert set(rows) == set(results)
    found = {}
    for clip, rec in results.items():
        with np.load(out / rec["masks"]) as data:
            found[clip] = (rec["analysis_id"], (rec["result"].get("model") or {}).get("version"), int(data["masks"].max()))
    return found


def test_clips_done_under_another_model_version_are_analysed_again(
    fake: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = exams(tmp_path), tmp_path / "out"
    assert batch(monkeypatch, src, out) == 0
    assert {r["model"]["version"] for r in state_lines(out)} == {"1"}  # journalled with each clip
    assert batch(monkeypatch, src, out) == 0 and fake.uploads == 3  # same model: done
    capsys.readouterr()

    fake.version = "2"  # the back end now serves another version
    assert batch(monkeypatch, src, out) == 0
    # was: all three kept as done, their version-1 results silently reported
    assert fake.uploads == 6  # analysed afresh, not the version-1 jobs given back for the old keys
    assert jobs_and_masks(out) == {"c0.npy": ("job3", "2", 3), "c1.npy": ("job4", "2", 4), "c2.npy": ("job5", "2", 5)}
    summary = capsys.readouterr().out
    assert "0 already done, 3 analysed" in summary and "3 done before under another model, now ultramn version 2" in summary
    assert batch(monkeypatch, src, out) == 0 and fake.uploads == 6  # done under version 2 now


def test_clips_done_under_other_weights_of_the_same_version_are_analysed_again(
    fake: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retrained weights exported to the same version: a gateway that knows the weights says so, and
    the clips are analysed again; a back end that does not say is taken at its name and version."""
    src, out = exams(tmp_path), tmp_path / "out"
    assert batch(monkeypatch, src, out) == 0  # a gateway that names no weights
    fake.weights = "a" * 64
    assert batch(monkeypatch, src, out) == 0 and fake.uploads == 3  # records without weights: kept as done
    capsys.readouterr()

    fake.weights = "b" * 64
    (out / "state.jsonl").write_text(
        "".join(json.dumps({**r, "model": {**r["model"], "weights": "a" * 64}}) + "\n" for r in state_lines(out))
    )
    assert batch(monkeypatch, src, out) == 0
    # was: all three kept as done (same name and version), the old weights' results silently reported
    assert fake.uploads == 6 and {r["model"]["weights"] for r in state_lines(out)[3:]} == {"b" * 64}
    assert {clip: job for clip, (job, _, _) in jobs_and_masks(out).items()} == {"c0.npy": "job3", "c1.npy": "job4", "c2.npy": "job5"}
    said = capsys.readouterr().out
    assert "3 done before under another model, now ultramn version 1 (weights bbbbbbbbbbbb)" in said
    assert batch(monkeypatch, src, out) == 0 and fake.uploads == 6  # done under these weights now
    fake.weights = None  # the same gateway without its model repository: cannot tell, kept
    assert batch(monkeypatch, src, out) == 0 and fake.uploads == 6


def test_clips_no_longer_in_the_input_are_named_and_kept_for_when_they_come_back(
    fake: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = exams(tmp_path), tmp_path / "out"
    assert batch(monkeypatch, src, out) == 0
    capsys.readouterr()
    kept = (src / "c1.npy").read_bytes()
    (src / "c1.npy").unlink()
    assert batch(monkeypatch, src, out) == 0
    said = capsys.readouterr().out
    # was: silently left out of the outputs, while masks/ still held it
    assert "2 clips: 2 already done" in said and "1 clip of earlier runs is not in this input" in said
    assert set(jobs_and_masks(out)) == {"c0.npy", "c2.npy"} and (out / "masks" / "c1.npy.npz").is_file()
    (src / "c1.npy").write_bytes(kept)  # back, unchanged: its record and masks serve again
    assert batch(monkeypatch, src, out) == 0 and fake.uploads == 3
    said = capsys.readouterr().out
    assert "3 clips: 3 already done" in said and "not in this input" not in said


def test_redo_analyses_done_clips_again_and_resumes_after_a_stop(
    fake: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = exams(tmp_path), tmp_path / "out"
    assert batch(monkeypatch, src, out) == 0
    first = jobs_and_masks(out)
    capsys.readouterr()

    assert batch(monkeypatch, src, out, "--redo") == 0
    # was: no such option (exit 2); every clip analysed afresh (new jobs, not the old ones given back)
    again = jobs_and_masks(out)
    assert again == {"c0.npy": ("job3", "1", 3), "c1.npy": ("job4", "1", 4), "c2.npy": ("job5", "1", 5)} != first
    assert "3 analysed, 0 failed" in (said := capsys.readouterr().out) and "3 by --redo" in said
    from ultramn.batch.state import REDO_FILE

    assert len(state_lines(out)) == 6 and not (out / REDO_FILE).exists()

    # a redo stopped by the back end (its disk full at the second clip) ...
    fake.refuse_at = 7
    assert batch(monkeypatch, src, out, "--redo") == 1
    assert (out / REDO_FILE).exists()
    # ... is resumed by the same command: the clip it did is not analysed a third time
    fake.refuse_at = None
    assert batch(monkeypatch, src, out, "--redo") == 0
    assert [r["clip"] for r in state_lines(out)[6:]] == ["c0.npy", "c1.npy", "c2.npy"]
    assert jobs_and_masks(out) == {"c0.npy": ("job6", "1", 6), "c1.npy": ("job8", "1", 8), "c2.npy": ("job9", "1", 9)}
    assert fake.uploads == 10 and not (out / REDO_FILE).exists()
    assert batch(monkeypatch, src, out) == 0 and fake.uploads == 10  # a plain re-run: all done


def test_old_records_without_a_model_are_kept_and_those_naming_one_in_their_result_are_checked(
    fake: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = exams(tmp_path), tmp_path / "out"
    assert batch(monkeypatch, src, out) == 0  # made under version 1 ...
    lines = state_lines(out)
    for rec in lines:  # ... and journalled by a release that did not journal the model
        rec.pop("model", None), rec.pop("redo", None)
    del lines[0]["result"]["model"]  # c0: its result names no model either
    (out / "state.jsonl").write_text("".join(json.dumps(rec) + "\n" for rec in lines))

    fake.version = "2"
    assert batch(monkeypatch, src, out) == 0
    # c0 names no model: kept as done; c1 and c2 name version 1 in their results: analysed again
    assert [r["clip"] for r in state_lines(out)[3:]] == ["c1.npy", "c2.npy"]
    assert {clip: v for clip, (_, v, _) in jobs_and_masks(out).items()} == {"c0.npy": None, "c1.npy": "2", "c2.npy": "2"}
    assert "1 already done, 2 analysed" in capsys.readouterr().out

    # a back end that does not say which model it serves: clips done before are kept, with a warning
    fake.version = None
    assert batch(monkeypatch, src, out) == 0 and fake.uploads == 5
    assert "does not say which model it serves" in capsys.readouterr().err


def test_model_identity_and_the_journal() -> None:
    from ultramn.batch.types import ModelId

    assert ModelId.of({"name": "ultramn", "version": "3"}) == ModelId("ultramn", "3") == ModelId.of({"name": "ultramn", "version": 3})
    for bad in (None, {}, {"name": "ultramn"}, {"name": "ultramn", "version": None}, {"name": "", "version": "1"}, "ultramn"):
        assert ModelId.of(bad) is None, bad
    rec = record("a.npy", "h", 1.0, result={"plane": "TW"}, model=ModelId("ultramn", "1"))
    assert rec["model"] == {"name": "ultramn", "version": "1"} and rec["redo"] is None
    a, b = ModelId("ultramn", "1", "a" * 64), ModelId("ultramn", "1", "b" * 64)
    assert ModelId.of({"name": "ultramn", "version": "1", "weights": "a" * 64}) == a and ModelId.of(a.as_dict()) == a
    assert ModelId.of({"name": "ultramn", "version": "1", "weights": ""}) == ModelId("ultramn", "1")  # unknown, not ""
    assert not a.same_as(b) and a.same_as(ModelId("ultramn", "1")) and ModelId("ultramn", "1").same_as(b)
    assert not a.same_as(ModelId("ultramn", "2", "a" * 64)) and not a.same_as(ModelId("other", "1", "a" * 64))
    assert str(a) == "ultramn version 1 (weights aaaaaaaaaaaa)" and str(ModelId("ultramn", "1")) == "ultramn version 1"


def test_keys_differ_per_model_and_redo_so_a_gateway_gives_no_old_job_back(tmp_path: Path) -> None:
    state = BatchState(tmp_path)
    plain = state.upload_key("a.npy", "h")
    assert plain == state.upload_key("a.npy", "h", "")  # the keys of earlier releases
    assert len({plain, state.upload_key("a.npy", "h", "model=ultramn/1"), state.upload_key("a.npy", "h", "model=ultramn/2")}) == 3


def test_redo_through_the_real_gateway_makes_new_analyses(
    gateway_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "exams"
    src.mkdir()
    np.save(src / "a.npy", synth_frames(9))
    out = tmp_path / "out"
    args = ["batch", str(src), "--out", str(out), "--gateway", gateway_url, "--api-key", KEY, "--quiet"]
    assert run_cli(monkeypatch, *args) == 0
    first = read_outputs(out)[0]["a.npy"]
    model = state_lines(out)[0]["model"]
    assert model == first["result"]["model"] and model["version"]  # the real gateway's /health/ready names it as results do
    assert run_cli(monkeypatch, *args) == 0 and len(state_lines(out)) == 1  # same model: done
    assert run_cli(monkeypatch, *args, "--redo") == 0
    again = read_outputs(out)[0]["a.npy"]
    assert again["analysis_id"] != first["analysis_id"] and len(state_lines(out)) == 2


def test_direct_on_triton_a_clip_done_under_another_version_or_weights_is_analysed_again(
    served_model: ServedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "exams"
    src.mkdir()
    np.save(src / "a.npy", synth_frames(9))
    out = tmp_path / "out"
    args = ["batch", str(src), "--out", str(out), "--triton", served_model.server.grpc_url, "--quiet"]
    assert run_cli(monkeypatch, *args, "--repository", str(tmp_path / "nowhere")) == 2  # not a folder: nothing done
    via_gateway = ["batch", str(src), "--out", str(out), "--gateway", "http://127.0.0.1:9", "--quiet"]
    assert run_cli(monkeypatch, *via_gateway, "--repository", str(served_model.repository)) == 2  # a gateway names its own
    monkeypatch.setenv("ULTRAMN_MODEL_REPOSITORY", str(served_model.repository))  # in the environment: ignored by a gateway run
    assert run_cli(monkeypatch, *via_gateway) == 1 and "cannot reach the gateway" in capsys.readouterr().err
    monkeypatch.delenv("ULTRAMN_MODEL_REPOSITORY")
    assert not (out / "state.jsonl").exists()
    args += ["--repository", str(served_model.repository)]  # the repository Triton runs on
    assert run_cli(monkeypatch, *args) == 0
    (rec,) = state_lines(out)
    served = rec["model"]
    assert served == rec["result"]["model"] and served["version"]  # Triton's served version, as results name it
    assert served["weights"] == file_sha256(served_model.checkpoint)  # the checkpoint the served ONNX was built from
    assert run_cli(monkeypatch, *args) == 0 and len(state_lines(out)) == 1  # same model: done
    older = {**served, "version": served["version"] + "0"}
    (out / "state.jsonl").write_text(json.dumps({**rec, "model": older, "result": {**rec["result"], "model": older}}) + "\n")
    assert run_cli(monkeypatch, *args) == 0  # was: kept as done
    assert [r["model"] for r in state_lines(out)] == [older, served]
    assert read_outputs(out)[0]["a.npy"]["result"]["model"] == served
    retrained = {**served, "weights": "0" * 64}  # other weights under the same version
    (out / "state.jsonl").write_text(json.dumps({**rec, "model": retrained, "result": {**rec["result"], "model": retrained}}) + "\n")
    assert run_cli(monkeypatch, *args) == 0  # was: kept as done
    assert [r["model"] for r in state_lines(out)] == [retrained, served]
