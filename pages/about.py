"""About: what FaceAudit audits and the label taxonomy it uses."""

import streamlit as st

from core import labels
from core.glossary import glossary

st.title("FaceAudit")
st.write(
    "FaceAudit assesses how a face-attribute model (age, gender, race) performs across demographic "
    "groups, so that subgroup disparities and fairness-related harms are visible before deployment."
)

st.subheader("Label taxonomy")
left, middle, right = st.columns(3)
left.markdown("**Age bins** (FairFace)\n\n" + "\n".join(f"- {name}" for name in labels.AGE_BINS))
middle.markdown("**Gender**\n\n" + "\n".join(f"- {name}" for name in labels.GENDERS))
right.markdown("**Race** (UTKFace)\n\n" + "\n".join(f"- {name}" for name in labels.RACES))

st.subheader("FairFace's seven races mapped onto five")
st.table({"FairFace race": list(labels.FAIRFACE_TO_RACE), "FaceAudit race": list(labels.FAIRFACE_TO_RACE.values())})
st.info(labels.RACE_MAPPING_NOTE)

st.subheader("Glossary")
st.caption("The same words and definitions are used on every page, in tooltips and in the exported report.")
terms = glossary()
st.table({"term": [term.name for term in terms.values()], "meaning": [term.definition for term in terms.values()],
          "better": [term.good or "—" for term in terms.values()]})
