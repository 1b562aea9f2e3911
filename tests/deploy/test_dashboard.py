"""The Grafana dashboard's Triton queries name metrics (and the model label) the real server exports."""

from __future__ import annotations

import json
import re
import urllib.request

from tests.deploy.test_compose import ROOT
from tests.serving.fixtures import ServedModel
from ultramn.contract import CONTRACT

DASHBOARD = ROOT / "compose" / "grafana" / "dashboards" / "ultramn.json"


def _exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_triton_metrics_in_the_dashboard_exist(served_model: ServedModel) -> None:
    url = f"http://{served_model.server.metrics_url.removeprefix('http://')}"
    with urllib.request.urlopen(url, timeout=10) as r:
        exposition = r.read().decode()
    exported = {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line.startswith("nv_")}
    assert f'model="{CONTRACT.name}"' in exposition
    used = {name for e in _exprs() for name in re.findall(r"\b(nv_[a-z_]+)", e)}
    # GPU metrics need a GPU (the embedded server runs with --allow-gpu-metrics=false)
    missing = {name for name in used if not name.startswith("nv_gpu_")} - exported
    assert used and not missing, f"the dashboard queries Triton metrics the server does not export: {missing}"
    models = {m for e in _exprs() for m in re.findall(r'model="([^"]+)"', e)}
    assert models == {CONTRACT.name}
