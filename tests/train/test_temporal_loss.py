"""The temporal area term: zero when predicted area changes follow the truth, hand-made values otherwise."""

from pathlib import Path

import pytest
import torch

from ultramn.contract import PLANES
from ultramn.train.config import LossSection, load_config
from ultramn.train.losses import multitask_loss, temporal_area_loss

ON, OFF = 1e4, -1e4  # sigmoid is exactly 1 / 0 in float32


def _frames(areas: list[int], size: int = 10) -> torch.Tensor:
    """Hard logits ``[1,T,size,size]`` whose frame t has ``areas[t]`` foreground pixels."""
    out = torch.full((1, len(areas), size * size), OFF)
    for t, a in enumerate(areas):
        out[0, t, :a] = ON
    return out.reshape(1, len(areas), size, size)


def _mask(areas: list[int]) -> torch.Tensor:
    return (_frames(areas) > 0).float()


def test_zero_when_area_changes_match_the_truth() -> None:
    truth = [20, 24, 30, 26]
    valid = torch.ones(1, 4, dtype=torch.bool)
    # a constant offset (over-segmenting by 5 px everywhere) is not temporal error
    assert float(temporal_area_loss(_frames([25, 29, 35, 31]), _mask(truth), valid)) == pytest.approx(0.0)


def test_jitter_against_a_constant_truth_is_relative_to_the_true_area() -> None:
    valid = torch.ones(1, 4, dtype=torch.bool)
    # |ΔA| = 5 px at each of 3 pairs, true area 20 px -> 0.25
    loss = temporal_area_loss(_frames([20, 25, 20, 25]), _mask([20, 20, 20, 20]), valid)
    assert float(loss) == pytest.approx(0.25)
    # a missed real change is penalised the same way
    missed = temporal_area_loss(_frames([20, 20, 20, 20]), _mask([20, 25, 20, 25]), valid)
    assert float(missed) == pytest.approx(5 / 22.5)


def test_padded_frames_and_single_frames_do_not_count() -> None:
    valid = torch.tensor([[True, True, True, False]])
    clean = temporal_area_loss(_frames([20, 25, 20, 20]), _mask([20, 20, 20, 20]), valid)
    padded_junk = temporal_area_loss(_frames([20, 25, 20, 90]), _mask([20, 20, 20, 20]), valid)
    assert float(clean) == pytest.approx(0.25) and float(padded_junk) == pytest.approx(0.25)
    single = _frames([20])
    assert float(temporal_area_loss(single, _mask([40]), torch.ones(1, 1, dtype=torch.bool))) == 0.0


def test_empty_truth_is_bounded_by_the_floor() -> None:
    valid = torch.ones(1, 2, dtype=torch.bool)
    # no nerve in the window: the scale is the floor (1 % of 100 px = 1 px), not zero
    loss = temporal_area_loss(_frames([0, 3]), _mask([0, 0]), valid)
    assert torch.isfinite(loss) and float(loss) == pytest.approx(3.0)


def test_multitask_loss_adds_the_term_only_when_weighted() -> None:
    torch.manual_seed(0)
    plane_logits = torch.randn(2, len(PLANES))
    mask_logits = torch.randn(2, 1, 4, 10, 10, requires_grad=True)
    masks = (torch.rand(2, 1, 4, 10, 10) > 0.6).float()
    valid = torch.ones(2, 4, dtype=torch.bool)
    planes = torch.tensor([0, 2])
    off = multitask_loss(plane_logits, mask_logits, planes, masks, valid, LossSection())
    on = multitask_loss(plane_logits, mask_logits, planes, masks, valid, LossSection(temporal_weight=2.0))
    assert off.temporal == 0.0 and on.temporal > 0.0
    assert float(on.total.detach()) == pytest.approx(float(off.total.detach()) + 2.0 * on.temporal, rel=1e-5)
    on.total.backward()
    assert mask_logits.grad is not None and bool(torch.isfinite(mask_logits.grad).all())


def test_every_committed_config_validates_and_the_experiment_pairs_differ_only_in_the_term() -> None:
    configs = Path(__file__).resolve().parents[2] / "configs"
    loaded = {p.stem: load_config(p) for p in sorted(configs.glob("*.toml"))}
    bases = ("ultramn", "ref-unet2d-pair", "ref-unet2d-multitask")
    assert {name for base in bases for name in (base, f"{base}-temporal-term")} <= set(loaded)
    for base in bases:
        plain, term = loaded[base], loaded[f"{base}-temporal-term"]
        assert plain.loss.temporal_weight == 0.0 and term.loss.temporal_weight > 0.0
        assert term.model_copy(update={"loss": plain.loss}) == plain
