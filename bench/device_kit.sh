#!/usr/bin/env bash
# Prepare what the GPU experiment (bench/gpu_temporal_experiment.py) needs on the lent device
# machine, which has PyTorch, numpy, scipy, matplotlib, tqdm and tensorboard but no PyPI access:
#   .whl/  wheels for Python 3.12 of the packages it lacks (versions as installed in .venv)
#   .psf/  the cached probe PSFs (so the generator does not need pymust there)
# Both folders are git-ignored locally (.git/info/exclude) and travel with `carry`.
# Usage: bash bench/device_kit.sh      (then see docs/model-card.md, "GPU plan", for the run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[[ -x $PY ]] || { echo "device_kit: run 'make install' first (.venv is missing)" >&2; exit 2; }
for d in /.whl/ /.psf/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >>.git/info/exclude; done

pkgs=(pydantic pydantic_core pydantic-settings annotated-types typing-inspection python-dotenv typing_extensions typer click)
specs=()
for p in "${pkgs[@]}"; do
  v=$($PY -m pip show "$p" 2>/dev/null | awk '/^Version:/{print $2}')
  [[ -n $v ]] || { echo "device_kit: $p is not installed in .venv" >&2; exit 2; }
  specs+=("$p==$v")
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${specs[@]}"

rm -rf .psf && mkdir -p .psf
# every PSF variant the generator samples from; computing a missing one here needs pymust (in .venv)
$PY -c 'from ultramn.data.synth.psf import warm_cache; print("\n".join(map(str, warm_cache())))' |
  while read -r f; do cp "$f" .psf/; done
du -sh .whl .psf
echo "device_kit: ready. Carry .whl and .psf (see docs/model-card.md, GPU plan)."
