"""Temperature scaling: fit one temperature per head on a bundle (validation), apply it to another, write the result;
or store the temperatures in the checkpoint that made the bundle, so every later prediction is calibrated.

    python -m training.calibrate --fit models/default/audits/utkface-val --apply models/default/audits/utkface-test \\
        --out models/default/audits/utkface-test-calibrated
    python -m training.calibrate --fit .../fairface-tune --checkpoint models/default

With --checkpoint the gender and race temperatures (race: over the seven classes of a seven-class head) go into
its config.json; its logits are divided by them from then on (its model id changes with them; the weights do
not). The age head is not rescaled: a bundle stores age-bin probabilities, not the year distribution.

The new bundle keeps every prediction's class (the age bin by the median rule on the rescaled bins) and rescales
its probabilities, so accuracy is unchanged and only confidence moves; it records the temperatures and where
they were fitted. Printed: per head, the temperature and the expected calibration error before and after, overall
and in the worst race × gender group (n ≥ 30).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.bundle import Bundle, read_bundle, write_bundle
from core.calibration import calibration_table, fit_temperatures, with_temperatures
from core.fairness import race_x_gender
from core.model import load_checkpoint
from training._cli import command


def _worst(table):
    big = table[~table["small_n"]]
    return (big["ece"].idxmax(), big["ece"].max()) if len(big) else (None, float("nan"))


def _store_in_checkpoint(fitted: Bundle, folder: Path) -> int:
    checkpoint = load_checkpoint(folder)
    if fitted.metrics.get("model_id") != checkpoint.model_id:
        raise SystemExit(f"{fitted.path} was made by model {fitted.metrics.get('model_id')}, not by {folder} "
                         f"({checkpoint.model_id}); audit the validation data with this checkpoint first")
    heads = ("gender", "race7" if checkpoint.model.config.race7 else "race")
    old = checkpoint.meta.get("temperatures") or {}
    fitted_now = fit_temperatures(with_temperatures(fitted.predictions, {h: 1 / t for h, t in old.items() if h in heads}),
                                  heads)  # fitted on the uncalibrated probabilities
    if not fitted_now:
        raise SystemExit(f"{fitted.path}: no head with labels and probabilities for {', '.join(heads)}")
    config_path = folder / "config.json"
    meta = json.loads(config_path.read_text())
    meta["temperatures"] = {head: round(value, 4) for head, value in fitted_now.items()}
    meta["calibration"] = {"fitted_on": fitted.metrics.get("dataset"), "faces": len(fitted.predictions),
                           "method": "temperature scaling per head, maximum likelihood (training.calibrate)"}
    config_path.write_text(json.dumps(meta, indent=2))
    calibrated = load_checkpoint(folder)
    print(f"temperatures {meta['temperatures']} fitted on {fitted.metrics.get('dataset')} written to {config_path}; "
          f"model id {checkpoint.model_id} -> {calibrated.model_id}")
    return 0


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", required=True, help="bundle to fit the temperatures on (a validation split)")
    target_group = parser.add_mutually_exclusive_group(required=True)
    target_group.add_argument("--apply", help="bundle to rescale (with --out)")
    target_group.add_argument("--checkpoint", help="store the temperatures in this checkpoint, which made --fit")
    parser.add_argument("--out", help="bundle folder to write (with --apply)")
    args = parser.parse_args(argv)
    if args.checkpoint:
        return _store_in_checkpoint(read_bundle(args.fit), Path(args.checkpoint))
    if not args.out:
        parser.error("--apply needs --out")
    fitted, target = read_bundle(args.fit), read_bundle(args.apply)
    temperatures = fit_temperatures(fitted.predictions)
    frame = with_temperatures(target.predictions, temperatures)
    rounded = {head: round(value, 3) for head, value in temperatures.items()}
    metrics = target.metrics | {"mitigation": f"temperature scaling {rounded}", "fitted_on": fitted.metrics.get("dataset"),
                                "temperatures": temperatures}
    write_bundle(Bundle(predictions=frame, metrics=metrics, rejects=target.rejects), args.out)
    for head, temperature in temperatures.items():
        before, after = (calibration_table(f, head).iloc[0] for f in (target.predictions, frame))
        (worst_before, ece_before), (worst_after, ece_after) = (_worst(calibration_table(f, head, race_x_gender(f)))
                                                                for f in (target.predictions, frame))
        print(f"{head}: T = {temperature:.3f}; ECE {before['ece']:.3f} → {after['ece']:.3f} "
              f"(95 % CI after {after['ece_ci_low']:.3f}–{after['ece_ci_high']:.3f}); worst race × gender group "
              f"{worst_before} {ece_before:.3f} → {worst_after} {ece_after:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
