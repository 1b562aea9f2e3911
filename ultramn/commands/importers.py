"""``ultramn import images|video|dicom``: users' own data -> the dataset layout (docs/dataset.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ultramn.data.splits import DEFAULT_RATIOS

if TYPE_CHECKING:
    from ultramn.data.importers.common import ImportOptions, ImportReport

_PLANE_HELP = "Plane of every imported clip: TW, TF, LW or LF (default: unknown)."
_SIDE_HELP = "Side of every imported clip: L or R (default: unknown)."
_SPACING_HELP = "Pixel size in mm (overrides what the files say)."
_SEED_HELP = "Seed of the participant-level split redrawn over the whole manifest."
_SKIP_HELP = "Report and skip unreadable or unmatched inputs instead of stopping at the first."
_RATIOS_HELP = "Train, val and test fractions of participants (sum 1)."

# Options every importer takes (defaults stay on the parameters).
OutOption = Annotated[Path, typer.Option("--out", help="Dataset folder (created; an existing manifest is merged).")]
PlaneOption = Annotated[str, typer.Option("--plane", help=_PLANE_HELP)]
SideOption = Annotated[str, typer.Option("--side", help=_SIDE_HELP)]
SpacingOption = Annotated[float | None, typer.Option("--pixel-spacing", help=_SPACING_HELP)]
FpsOption = Annotated[
    float | None,
    typer.Option(
        "--fps",
        help="Frames per second of every clip, over the file's own rate (image sequences have none): "
        "temporal stability and excursion speed per second need it. Stills keep none.",
    ),
]
SplitSeedOption = Annotated[int, typer.Option("--split-seed", min=0, help=_SEED_HELP)]
RatiosOption = Annotated[tuple[float, float, float], typer.Option("--ratios", help=_RATIOS_HELP)]
SkipBadOption = Annotated[bool, typer.Option("--skip-bad", help=_SKIP_HELP)]


def _options(
    out: Path,
    plane: str,
    side: str,
    pixel_spacing: float | None,
    fps: float | None,
    mask_value: int | None,
    split_seed: int,
    ratios: tuple[float, float, float],
    skip_bad: bool,
) -> ImportOptions:
    from ultramn.data.importers.common import ImportOptions

    return ImportOptions(
        out=out,
        plane=plane.upper(),
        side=side.upper(),
        pixel_spacing_mm=pixel_spacing,
        fps=fps,
        mask_value=mask_value,
        split_seed=split_seed,
        ratios=ratios,
        skip_bad=skip_bad,
    )


def _print_report(report: ImportReport, mask_value: int | None = None) -> None:
    from ultramn.data.splits import format_split_table

    frames = sum(r.n_frames for r in report.written)
    typer.echo(f"imported {len(report.written)} clips ({frames} frames) -> {report.manifest}")
    for line in report.skipped:
        typer.echo(f"skipped: {line}", err=True)
    for line in report.warnings:
        typer.echo(f"warning: {line}", err=True)
    if report.empty_masks:
        shown = ", ".join(report.empty_masks[:10]) + (" ..." if len(report.empty_masks) > 10 else "")
        typer.echo(f"warning: {len(report.empty_masks)} clip(s) have no nerve pixels in any mask: {shown}", err=True)
        if mask_value is not None and len(report.empty_masks) == len(report.written):
            typer.echo(
                f"hint: no mask holds the label {mask_value} (--mask-value); give the value your masks mark the nerve "
                "with (e.g. 255 for 0/255 masks), or leave --mask-value out to take every nonzero pixel",
                err=True,
            )
    typer.echo(f"dataset now holds {len(report.all_records)} clips; split by participant:")
    typer.echo(format_split_table(report.all_records))


def register(app: typer.Typer) -> None:
    """Add the ``import`` sub-app (``images``, ``video``, ``dicom``) to ``app``."""
    sub = typer.Typer(name="import", help="Import your own data into the dataset layout.", no_args_is_help=True)
    app.add_typer(sub, name="import")

    @sub.command("images")
    def images_command(
        images: Annotated[Path, typer.Option("--images", help="Folder of PNG/BMP/JPEG/TIFF images.")],
        masks: Annotated[Path, typer.Option("--masks", help="Folder of mask images named like the images.")],
        out: OutOption,
        mask_value: int | None = typer.Option(
            None, "--mask-value", help="Label of the nerve in multi-class masks (default: any nonzero pixel is nerve)."
        ),
        mask_suffix: str = typer.Option("", "--mask-suffix", "--masks-suffix", help="Mask stem = image stem + this (e.g. _mask)."),
        clip_pattern: str | None = typer.Option(
            None, "--clip-pattern", help="Regex on the file name; its first group is the clip id (frames sharing it form one clip)."
        ),
        participant_pattern: str | None = typer.Option(
            None, "--participant-pattern", help="Regex on the file name; its first group is the participant id (default: the clip id)."
        ),
        dataset: str | None = typer.Option(
            None,
            "--dataset",
            help="Prefix of clip and participant ids (default: the images folder's name, or its parent's if it is called images/frames).",
        ),
        plane: PlaneOption = "",
        side: SideOption = "",
        pixel_spacing: SpacingOption = None,
        fps: FpsOption = None,
        split_seed: SplitSeedOption = 0,
        ratios: RatiosOption = DEFAULT_RATIOS,
        skip_bad: SkipBadOption = False,
    ) -> None:
        """Import still images (or frame sequences) with mask images."""
        from ultramn.data.importers.images import import_images

        opts = _options(out, plane, side, pixel_spacing, fps, mask_value, split_seed, ratios, skip_bad)
        report = import_images(
            images,
            masks,
            opts,
            dataset=dataset,
            mask_suffix=mask_suffix,
            clip_pattern=clip_pattern,
            participant_pattern=participant_pattern,
        )
        _print_report(report, opts.mask_value)

    @sub.command("video")
    def video_command(
        videos: Annotated[Path, typer.Option("--videos", help="Folder of MP4/AVI/MOV/MKV/WebM videos or animated GIFs.")],
        out: OutOption,
        masks: Path | None = typer.Option(None, "--masks", help="Folder holding the masks (default: --videos)."),
        masks_suffix: str = typer.Option(
            "_mask",
            "--masks-suffix",
            "--mask-suffix",
            help="clip.mp4's mask is clip<suffix>/ (PNG frames), clip<suffix>.npy/.npz, clip<suffix>.mp4/.avi/.gif or .tif.",
        ),
        mask_value: int | None = typer.Option(None, "--mask-value", help="Nerve label in label masks (not videos)."),
        participant_pattern: str | None = typer.Option(
            None, "--participant-pattern", help="Regex on the file name; its first group is the participant id (default: the stem)."
        ),
        dataset: str | None = typer.Option(None, "--dataset", help="Prefix of ids (default: the folder's name)."),
        plane: PlaneOption = "",
        side: SideOption = "",
        pixel_spacing: SpacingOption = None,
        fps: FpsOption = None,
        split_seed: SplitSeedOption = 0,
        ratios: RatiosOption = DEFAULT_RATIOS,
        skip_bad: SkipBadOption = False,
    ) -> None:
        """Import videos with per-frame masks."""
        from ultramn.data.importers.video import import_videos

        opts = _options(out, plane, side, pixel_spacing, fps, mask_value, split_seed, ratios, skip_bad)
        report = import_videos(
            videos,
            opts,
            masks_dir=masks,
            mask_suffix=masks_suffix,
            dataset=dataset,
            participant_pattern=participant_pattern,
        )
        _print_report(report, opts.mask_value)

    @sub.command("dicom")
    def dicom_command(
        dicoms: Annotated[Path, typer.Option("--dicoms", help="Folder searched recursively for DICOM files.")],
        out: OutOption,
        masks: Path | None = typer.Option(None, "--masks", help="Folder mirroring --dicoms with the masks (default: beside each DICOM)."),
        masks_suffix: str = typer.Option(
            "_mask", "--masks-suffix", "--mask-suffix", help="x.dcm's mask is x<suffix>/ (PNG frames), x<suffix>.npy/.npz or .tif."
        ),
        mask_value: int | None = typer.Option(None, "--mask-value", help="Nerve label in label masks."),
        salt: str | None = typer.Option(
            None, "--salt", help="Secret mixed into the pseudonyms (default: random, kept in OUT/.participant_salt)."
        ),
        plane: PlaneOption = "",
        side: Annotated[str, typer.Option("--side", help=_SIDE_HELP + " Default: the DICOM's laterality.")] = "",
        pixel_spacing: SpacingOption = None,
        fps: FpsOption = None,
        split_seed: SplitSeedOption = 0,
        ratios: RatiosOption = DEFAULT_RATIOS,
        skip_bad: SkipBadOption = False,
    ) -> None:
        """Import DICOM cine loops with masks; ids are salted hashes, never patient identifiers."""
        from ultramn.data.importers.dicom import import_dicoms

        opts = _options(out, plane, side, pixel_spacing, fps, mask_value, split_seed, ratios, skip_bad)
        report = import_dicoms(dicoms, opts, masks_dir=masks, mask_suffix=masks_suffix, salt=salt)
        _print_report(report, opts.mask_value)
