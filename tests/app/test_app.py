from streamlit.testing.v1 import AppTest

from core import labels
from core.config import REPO_ROOT

APP = str(REPO_ROOT / "app.py")


def test_about_page_renders_taxonomy_and_race_mapping():
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value == "FaceAudit"
    assert any(labels.RACE_MAPPING_NOTE == info.value for info in app.info)
