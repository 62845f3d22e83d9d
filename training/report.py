"""Export a bias report of an audit bundle for pipelines.

    python -m training.report --bundle models/default/audits/fairface-sample --format html --out report.html
    python -m training.report --bundle ... --format pdf --out report.pdf --filter race=Black --filter gender=Female
    python -m training.report --bundle audits/my-photos --format html --out skin.html --group-by skin,gender
    python -m training.report --bundle models/default/audits/utkface-test --format html --out mitigations.html \
        --compare models/default/audits/utkface-test-equalerror --compare models/default/audits/utkface-test-thresholdopt

Formats: html (self-contained, works offline), pdf (headless Chromium prints the HTML), json
(every metric, versioned schema), csv (a zip with one CSV per table). --group-by adds the bundle's
own columns (any column with at most 50 values) and their intersection, with its worst cell; --filter
takes any such column and refuses unknown columns or values, naming the valid ones. Each --compare
bundle adds a "Bundles compared" section: per-race deltas against --bundle with paired intervals.
Explanation panels are computed with the model that made the bundle (found by its weights id in the
folder the bundle records or in --model), never with another one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.bundle import bundle_model_dir, read_bundle
from core.compare import bundle_note, compare_bundles
from core.config import Settings, add_settings_arguments
from core.faces import FaceDetector
from core.fairness import check_filters, filter_frame
from core.model import CheckpointError, load_checkpoint
from core.report import groupings, html_to_pdf, report_csv_zip, report_extras, report_html, report_json
from training._cli import command


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--format", required=True, choices=["html", "pdf", "json", "csv"])
    parser.add_argument("--out", required=True)
    add_settings_arguments(parser, "model", "data")  # the model card and Grad-CAM panels; the images for thumbnails
    parser.add_argument("--filter", action="append", default=[], metavar="COLUMN=VALUE",
                        help="keep rows whose COLUMN is VALUE (repeat; values of one column are OR-ed)")
    parser.add_argument("--group-by", default="", metavar="COLUMN[,COLUMN…]",
                        help="the bundle's own grouping columns, e.g. skin,gender (up to three are intersected)")
    parser.add_argument("--compare", action="append", default=[], metavar="BUNDLE",
                        help="another bundle to compare with --bundle, e.g. after a mitigation (repeat)")
    parser.add_argument("--no-images", action="store_true",
                        help="leave out thumbnails and explanation panels (for images that may not be shared)")
    args = parser.parse_args(argv)
    settings = Settings.from_args(args)
    paths = [args.bundle, *args.compare]
    names = [Path(path).name for path in paths]
    if len(set(names)) < len(names):  # same folder name in two places: tell them apart by path
        names = paths
    bundles = {name: read_bundle(path) for name, path in zip(names, paths)}
    bundle = bundles[names[0]]
    filters: dict[str, list[str]] = {}
    for item in args.filter:
        column, _, value = item.partition("=")
        if not value:
            parser.error(f"--filter takes COLUMN=VALUE, got {item!r}")
        filters.setdefault(column, []).append(value)
    group_by = [column.strip() for column in args.group_by.split(",") if column.strip()]
    check_filters(bundle.predictions, filters)
    groupings(bundle.predictions, group_by)
    frame = filter_frame(bundle.predictions, filters)
    comparison = None
    if args.compare and not frame.empty:
        comparison = compare_bundles({name: filter_frame(b.predictions, filters) for name, b in bundles.items()},
                                     notes={name: bundle_note(b.metrics) for name, b in bundles.items()},
                                     datasets={name: b.metrics.get("dataset") for name, b in bundles.items()})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "json":
        out.write_text(report_json(frame, bundle.metrics, filters, comparison, group_by))
    elif args.format == "csv":
        out.write_bytes(report_csv_zip(frame, comparison, group_by))
    else:
        checkpoint, meta = None, {}
        model_dir = bundle_model_dir(bundle.metrics, settings.model_dir)
        if model_dir is not None and not args.no_images:
            try:
                checkpoint = load_checkpoint(model_dir)
                meta = checkpoint.meta
            except CheckpointError as error:
                print(f"warning: no explanation panels ({error})", file=sys.stderr)
        gallery, panels, note = ([], [], "") if args.no_images else report_extras(
            frame, bundle.metrics, settings.data_dir, checkpoint=checkpoint,
            detector=FaceDetector() if checkpoint is not None else None)
        if note and not panels:
            print(f"note: {note}", file=sys.stderr)
        text = report_html(frame, bundle.metrics, meta, filters, gallery=gallery, explanations=panels,
                           comparison=comparison, group_by=group_by, explanation_note=note)
        if args.format == "html":
            out.write_text(text)
        else:
            html_to_pdf(text, out)
    print(f"wrote {out} ({len(frame)} faces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
