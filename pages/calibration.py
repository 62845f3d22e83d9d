"""Calibration: does the model's confidence mean what it says, overall and for each group?"""

import streamlit as st

from core.calibration import BINS, calibrated_heads
from core.charts import reliability_chart
from core.fairness import CONFUSION_TITLES, group_label, race_x_gender
from pages import _cached

st.title("Calibration")
bundle = _cached.current_bundle()
if bundle is None:
    st.stop()
frame = _cached.filtered_predictions(bundle)
heads = calibrated_heads(frame)
if not heads:
    st.info("This bundle has no probabilities with true labels to check (e.g. imported labels without scores).")
    st.stop()
left, right = st.columns(2)
head = left.radio("Head", heads, horizontal=True, key="calibration_head", format_func=CONFUSION_TITLES.get)
options = list(_cached.filter_options(bundle))
_cached.keep_choices("calibration_by", options)
by = right.multiselect("Per group of", options, default=[c for c in race_x_gender(frame) if c in options],
                       key="calibration_by", max_selections=2)

table = _cached.calibration(bundle, head, by)
overall = _cached.calibration(bundle, head, []).iloc[0]
st.write(f"**Expected calibration error (ECE)** of the {CONFUSION_TITLES[head]} head over {int(overall['n']):,} "
         "faces: "
         f"{overall['ece']:.3f} (95 % CI {overall['ece_ci_low']:.3f}–{overall['ece_ci_high']:.3f}); mean confidence "
         f"{overall['confidence']:.3f} against {overall['accuracy']:.3f} right.")
st.caption(f"ECE: over {BINS} equal-width confidence bins, the share-weighted gap between confidence and the share "
           "right (0 is perfect). It is biased upward for small groups, so compare intervals, not points. 95 % "
           "intervals of an ECE: bootstrap, the photos of one person drawn together, shifted down by the bootstrap's "
           "estimate of that upward bias.")
worst = table[~table["small_n"]].sort_values("ece", ascending=False).head(4).index.tolist() if by else []
st.plotly_chart(reliability_chart(_cached.reliability_curves(bundle, head, by, worst), CONFUSION_TITLES[head]),
                key="calibration_chart")
if by:
    st.caption("The four groups (n ≥ 30) with the largest ECE, beside all faces; bars are 95 % Wilson intervals.")
    st.dataframe(table.assign(group=[group_label(key) for key in table.index]).reset_index(drop=True)[
        ["group", "n", "ece", "ece_ci_low", "ece_ci_high", "confidence", "accuracy", "overconfidence", "small_n"]].round(3),
        hide_index=True, key="calibration_table")
st.caption("To recalibrate: `python -m training.calibrate --fit <validation bundle> --apply <bundle> --out <new bundle>` "
           "fits one temperature per head and writes a bundle to compare with this one.")
