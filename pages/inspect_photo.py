"""Inspect a photo: faces found, predictions with their range, and live explanations."""

import numpy as np
import pandas as pd
import streamlit as st

from core import labels
from core.chips import faces_for_model
from core.config import REPO_ROOT
from core.explain import BASELINES, stability, valid_targets
from core.faces import MIN_FACE_PX, choose_face, draw_faces
from core.images import ImageError, load_image
from core.memory import release_freed_memory
from core.trainer import predict
from pages import _cached

METHOD_NAMES = {"gradcam": "Grad-CAM", "integrated_gradients": "Integrated Gradients", "lime": "LIME"}
SAMPLES = sorted((REPO_ROOT / "samples").glob("*.jpg"))
st.title("Inspect a photo")
checkpoint = _cached.model()
if checkpoint is None:
    st.stop()

upload = st.file_uploader("Upload a photo", type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff"], key="inspect_upload")
sample = st.selectbox("…or pick a sample (London set, CC BY 4.0)", ["(none)"] + [p.name for p in SAMPLES],
                      key="inspect_sample")
if upload is not None:
    data, name = upload.getvalue(), upload.name
elif sample != "(none)":
    data, name = (REPO_ROOT / "samples" / sample).read_bytes(), sample
else:
    st.info("Upload a photo or pick a sample.")
    st.stop()

turn = st.radio("Turn the photo (for a sideways or upside-down one)", [0, 90, 180, 270], horizontal=True,
                format_func=lambda degrees: f"{degrees}°" if degrees else "as it is", key="inspect_turn")
try:
    photo = np.ascontiguousarray(np.rot90(load_image(data), -turn // 90))  # clockwise
except ImageError as error:
    st.error(f"Cannot use {name}: {error}")
    st.stop()
result = faces_for_model(photo, checkpoint.model.config.input_size, _cached.detector())
if not result.faces:
    st.warning(result.message)
    st.image(result.image, caption=name, width=400)
    st.stop()

left, right = st.columns([2, 1])
left.image(draw_faces(result.image, result.faces), caption=f"{name}: {len(result.faces)} face(s), largest first", width="stretch")
choice = 0
if len(result.faces) > 1:  # the default is the face an audit of this photo would score (core.faces.choose_face)
    central, _ = choose_face(result.faces, result.image.shape[1], result.image.shape[0])
    choice = right.radio("Face", list(range(len(result.faces))), index=central, key="inspect_face",
                         format_func=lambda i: f"face {i + 1}" + (" (most central: the one an audit scores)" if i == central else ""))
chip = result.chips[choice]
right.image(chip, caption="aligned chip (model input)", width=160)
flags = result.flags[choice]
if flags != "none":
    right.warning(f"Less reliable: {flags} (a batch audit records this in `face_flags`). Faces should be upright, "
                  f"at least {MIN_FACE_PX} px wide and clearly visible; turn the photo above if it is sideways or upside down.")

outputs = predict(checkpoint.model, np.stack([chip]))
age, spread = float(outputs["age"][0]), float(outputs["age_std"][0])
right.metric("Age", f"{age:.0f}", help="expected age under the predicted distribution")
right.caption(f"likely range {max(age - spread, 0):.0f}–{age + spread:.0f} (± one standard deviation)")
gender_probs = pd.Series(outputs["gender"][0], index=labels.GENDERS, name="probability")
race_probs = pd.Series(outputs["race"][0], index=labels.RACES, name="probability")
right.write(f"**Gender**: {gender_probs.idxmax()} ({gender_probs.max():.0%})")
right.bar_chart(gender_probs, horizontal=True, height=120)
right.write(f"**Race**: {race_probs.idxmax()} ({race_probs.max():.0%})")
right.bar_chart(race_probs, horizontal=True, height=200)
st.caption(labels.RACE_MAPPING_NOTE)

st.subheader("Why? Explanations of one head and class")
targets = {head: valid_targets(head) for head in ("gender", "race", "age")}
predicted = {"gender": gender_probs.idxmax(), "race": race_probs.idxmax(), "age": "expected"}
a, b, c, d = st.columns(4)
head = a.selectbox("Head", list(targets), key="inspect_head")
target = b.selectbox("Class", list(targets[head]), index=list(targets[head]).index(predicted[head]),
                     key=f"inspect_target_{head}")
baseline = c.selectbox("IG baseline", list(BASELINES), key="inspect_baseline")
samples = d.select_slider("LIME samples", [250, 500, 1000, 2000], value=1000, key="inspect_samples")
with_stability = st.checkbox("Stability scores (LIME over 3 seeds, IG over 3 baselines; about 3× the time)",
                             key="inspect_stability")

settings = {"gradcam": {}, "integrated_gradients": {"baseline": baseline, "steps": 50}, "lime": {"samples": samples}}
cache, model_id, face = _cached.explanation_cache(), checkpoint.model_id, _cached.mean_face()
progress = st.progress(0.0, text="Explaining…")
results = {}
for step, (method, extra) in enumerate(settings.items()):
    progress.progress(step / len(settings), text=f"Computing {METHOD_NAMES[method]}…")
    results[method] = cache.get(checkpoint.model, model_id, chip, method=method, head=head, target=target,
                                mean_face=face, **extra)
progress.progress(1.0, text="Done")
columns = st.columns(3)
for column, (method, result) in zip(columns, results.items()):
    column.image(result.overlay, caption=METHOD_NAMES[method], width=240)
    details = f"{result.seconds:.2f} s"
    if result.delta is not None:
        details += f" · convergence delta {result.delta:.4f}"
    if with_stability and method != "gradcam":
        with st.spinner(f"Stability of {METHOD_NAMES[method]}…"):
            score = stability(checkpoint.model, chip, method=method, head=head, target=target, mean_face=face)
        details += f" · stability {score:.2f}" + (" (low: do not trust this map)" if score < 0.5 else "")
    column.caption(details)
value = results["gradcam"].value
st.caption(f"Explained value on this chip: {value:.1f} years" if target == "expected" and head == "age"
           else f"Explained value on this chip: P({target}) = {value:.2f}. Warm colours: evidence for it.")
release_freed_memory()  # what this rerun's thread freed (decoded photo, chips) goes back to the OS
