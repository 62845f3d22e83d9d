"""Inspect a photo: faces found, predictions with their range, Grad-CAM at once and LIME / IG on request."""

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from core import labels
from core.chips import faces_for_model
from core.config import REPO_ROOT
from core.errors import FaceAuditError
from core.explain import BASELINES, stability, valid_targets
from core.faces import MIN_FACE_PX, choose_face, crop_face, draw_faces
from core.heatmap import colour_bar
from core.images import ImageError, load_image
from core.memory import release_freed_memory
from core.trainer import predict
from pages import _cached

METHOD_NAMES = {"gradcam": "Grad-CAM", "integrated_gradients": "Integrated Gradients", "lime": "LIME"}
SAMPLES = sorted((REPO_ROOT / "samples").glob("*.jpg"))
st.title("Inspect a photo")
checkpoints = _cached.audited_checkpoints()  # other FaceAudit checkpoints audited here: all three explanations
others = _cached.onnx_models()  # other models beside the checkpoint: predicted and explained with LIME only
choices = ["FaceAudit model", *checkpoints, *others]
picked = st.selectbox("Model", choices, key="inspect_model",
                      format_func=lambda name: f"{name} (FaceAudit checkpoint)" if name in checkpoints else name,
                      help="The dashboard's model, other FaceAudit checkpoints audited beside it, and ONNX models (with "
                           "their spec, <file>.onnx.json) in the model folder.") if len(choices) > 1 else "FaceAudit model"
checkpoint = _cached.model(checkpoints.get(picked))
if checkpoint is None:
    st.stop()
onnx = _cached.onnx_model(others[picked]) if picked in others else None
if picked in others and onnx is None:
    st.stop()
size, model_id = (onnx.size, onnx.model_id) if onnx else (checkpoint.model.config.input_size, checkpoint.model_id)

SOURCES = {"upload": "Upload a photo", "sample": "Use a sample (London set, CC BY 4.0)"}
source = st.radio("Photo", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="inspect_source")
if source == "upload":
    upload = st.file_uploader("Upload a photo", type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff"],
                              key="inspect_upload")
    if upload is None:
        st.info("Upload a photo, or choose “Use a sample” above.")
        st.stop()
    data, name = upload.getvalue(), upload.name
else:
    sample = st.selectbox("Sample", [p.name for p in SAMPLES], key="inspect_sample")
    data, name = (REPO_ROOT / "samples" / sample).read_bytes(), sample

turn = st.radio("Turn the photo (for a sideways or upside-down one)", [0, 90, 180, 270], horizontal=True,
                format_func=lambda degrees: f"{degrees}°" if degrees else "as it is", key="inspect_turn")
try:
    photo = np.ascontiguousarray(np.rot90(load_image(data), -turn // 90))  # clockwise
except ImageError as error:
    st.error(f"Cannot use {name}: {error}")
    st.stop()
result = faces_for_model(photo, size, _cached.detector())
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
if onnx and onnx.margin is not None:  # a model trained on plain face crops gets one
    chip = crop_face(result.image, result.faces[choice].box, onnx.margin, size)
    right.image(chip, caption=f"face crop, margin {onnx.margin:g} (model input)", width=160)
else:
    chip = result.chips[choice]
    right.image(chip, caption="aligned chip (model input)", width=160)
flags = result.flags[choice]
if flags != "none":
    right.warning(f"Less reliable: {flags} (a batch audit records this in `face_flags`). Faces should be upright, "
                  f"at least {MIN_FACE_PX} px wide and clearly visible; turn the photo above if it is sideways or upside down.")

try:
    outputs = onnx.predict(np.stack([chip])) if onnx else predict(checkpoint.model, np.stack([chip]))
except FaceAuditError as error:  # another model's outputs that cannot be shown as predictions (NaN, say)
    st.error(f"{picked} gives no usable prediction for this face: {error}")
    st.stop()
if "age" in outputs:
    age = float(outputs["age"][0])
    given = (onnx or checkpoint.model).age_estimate
    right.metric("Age", f"{age:.0f}", help="the age the model gives" if onnx and onnx.heads["age"] == "years"
                 else f"the {given} of the predicted age distribution")
    if "age_std" in outputs:
        spread = float(outputs["age_std"][0])
        right.caption(f"likely range {max(age - spread, 0):.0f}–{age + spread:.0f} (± one standard deviation)")
probs = {head: pd.Series(outputs[head][0], index=labels.HEAD_CLASSES[head], name="probability")
         for head in ("gender", "race", "race7") if head in outputs}
for head, title, height in (("gender", "Gender", 120), ("race", "Race", 200), ("race7", "Race (FairFace's 7)", 250)):
    if head in probs:
        right.write(f"**{title}**: {probs[head].idxmax()} ({probs[head].max():.0%})")
        right.bar_chart(probs[head], horizontal=True, height=height)
    elif head != "race7":  # a seven-class head is shown where the model has one
        right.caption(f"{title}: this model does not predict it.")
st.caption(labels.race_note("race7" in probs))

st.subheader("Why? Explanations of one head and class")
chip_id = hashlib.sha1(chip.tobytes()).hexdigest()[:12]  # a new photo, face or turn: the class follows its prediction
for key in [k for k in st.session_state if k.startswith("inspect_target_") and not k.endswith(chip_id)]:
    del st.session_state[key]
explained_heads = ["gender", "race", "age"] if not onnx else (  # an ONNX model: the heads it gives as distributions
    [head for head in ("gender", "race") if head in onnx.heads] + (["age"] if onnx.heads.get("age") == "years-logits" else []))
if not explained_heads:
    st.info("This model gives nothing LIME can explain (no class probabilities, no age distribution).")
    st.stop()
targets = {head: valid_targets(head) for head in explained_heads}
predicted = {head: probs[head].idxmax() for head in probs} | {"age": "expected"}
a, b, c, d = st.columns(4)
head = a.selectbox("Head", list(targets), key="inspect_head")
target = b.selectbox("Class", list(targets[head]), index=list(targets[head]).index(predicted[head]),
                     key=f"inspect_target_{head}_{chip_id}", help="The predicted class unless you choose another.")
baseline = c.selectbox("IG baseline", list(BASELINES), key="inspect_baseline", disabled=bool(onnx))
samples = d.select_slider("LIME samples", [250, 500, 1000, 2000], value=500, key="inspect_samples",
                          help="500 gives maps that agree with themselves over seeds (stability ≥ 0.95 on the samples); "
                               "more samples take proportionally longer.")
with_stability = not onnx and st.checkbox("Stability scores (LIME over 3 seeds, IG over 3 baselines; about 3× the time)",
                                          key="inspect_stability")

cache, face, explained = _cached.explanation_cache(), _cached.mean_face(), onnx or checkpoint.model
asked = {"head": head, "target": target}
slow = {"integrated_gradients": {"baseline": baseline, "steps": 50}, "lime": {"samples": samples}}
if onnx:  # only its outputs can be used: LIME; Grad-CAM and IG need its gradients
    slow = {"lime": slow["lime"]}
    results = {"gradcam": None, "integrated_gradients": None}
else:
    results = {"gradcam": cache.get(explained, model_id, chip, method="gradcam", **asked)}  # < 0.1 s: always
results |= {method: cache.peek(model_id, chip, method=method, **asked, **extra) for method, extra in slow.items()}
scores = st.session_state.setdefault("inspect_scores", {})  # stability by (chip, head, target, method)
missing = [m for m in slow if results[m] is None or (with_stability and (chip_id, head, target, m) not in scores)]
run, stop = st.columns([3, 1])
if missing and run.button(f"Run {' and '.join(METHOD_NAMES[m] for m in missing)}", type="primary", key="inspect_run",
                          help="Seconds to minutes on a CPU; the results are kept for this face and class."):
    stop.button("Stop explaining", key="inspect_stop", help="Stops at the next batch; nothing half-done is kept.")
    bar = st.progress(0.0)
    for step, method in enumerate(missing):
        def report(share: float, step: int = step, method: str = method) -> None:  # a click on Stop interrupts here
            bar.progress((step + share) / len(missing), text=f"{METHOD_NAMES[method]}: {share:.0%}")
        results[method] = cache.get(explained, model_id, chip, method=method, mean_face=face, progress=report,
                                    **asked, **slow[method])
        if with_stability:
            report(0.0)
            scores[chip_id, head, target, method] = stability(checkpoint.model, chip, method=method, mean_face=face,
                                                              **asked)
    st.rerun()  # show the kept results without the buttons of this run
elif st.session_state.get("inspect_stop"):
    st.info("Stopped. Nothing half-done was kept; run again when you like.")

columns = st.columns(3)
for column, method in zip(columns, METHOD_NAMES):
    result = results[method]
    if result is None and onnx and method != "lime":
        column.caption(f"{METHOD_NAMES[method]}: not available for {picked} (it needs the model's gradients; LIME "
                       "needs only its outputs).")
        continue
    if result is None:
        column.caption(f"{METHOD_NAMES[method]}: not run yet for this face and class (button above).")
        continue
    column.image(result.overlay, caption=METHOD_NAMES[method], width=240)
    details = f"{result.seconds:.2f} s"
    if result.delta is not None:
        details += f" · convergence delta {result.delta:.4f}"
    score = scores.get((chip_id, head, target, method))
    if with_stability and score is not None:
        details += f" · stability {score:.2f}" + (" (low: do not trust this map)" if score < 0.5 else "")
    column.caption(details)
st.image(colour_bar(), width=240)
st.caption("Colour: evidence *for* the class, from none (transparent) to the map's strongest (its 99th percentile, "
           "red). Each map is scaled on its own: compare where, not how much.")
shown = results["gradcam"] or results["lime"]
if shown is not None:
    value = shown.value
    said = (f"predicted age {value:.1f} years, the age shown above" if target == "expected"
            else f"P(age {target}) = {value:.1%}" if head == "age" else f"P({target}) = {value:.1%}, as in the bars above")
    st.caption(f"Explained value on this chip: {said} (chip and mirror image averaged, as in an audit).")
release_freed_memory()  # what this rerun's thread freed (decoded photo, chips) goes back to the OS
