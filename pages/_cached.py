"""Streamlit-side state: cached loaders, the bundle picker and the sidebar filter. Pages import from here."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core import labels
from core.bundle import (
    UNSHOWN_COLUMNS,
    Bundle,
    BundleError,
    bundle_model_dir,
    checkpoint_id,
    csv_bytes,
    discover_bundles,
    read_bundle,
    read_bundle_metrics,
    stored_overview,
)
from core.bundle import audited_checkpoints as audited_checkpoints_of
from core.calibration import calibration_table
from core.calibration import reliability_curves as reliability_curves_of
from core.cohorts import COHORTS_FILE, Cohort, CohortError, face_keys, read_cohorts, select, side_by_side
from core.compare import Comparison, bundle_note, compare_bundles
from core.config import REPO_ROOT, Settings
from core.fairness import (
    MAX_GROUP_VALUES,
    filter_frame,
    group_label,
    group_members,
    row_values,
)
from core.fairness import filter_options as filter_options_of
from core.gallery import Mistakes, find_mistakes
from core.overview import Overview, overview
from core.suspects import SUSPECT_COLUMNS, SUSPECTS_FILE, read_suspects, with_and_without
from core.view import parse_view, view_params

if TYPE_CHECKING:  # torch, timm and OpenCV load lazily: pages that only read bundles render without them
    from core.explain import ExplanationCache
    from core.faces import FaceDetector
    from core.model import Checkpoint

MEAN_FACE_FILE = REPO_ROOT / "core" / "assets" / "mean_face.png"


def _run_through_app() -> None:
    """Make sure app.py (navigation, sidebar) runs first, also for a deep link on a freshly started server.

    Until some run calls `st.navigation`, Streamlit treats a `pages/` folder the legacy way: a link to
    /subgroups runs that file alone and lists every file of the folder (this one too) as a page. Leave
    that mode and rerun: the rerun goes through app.py and opens the linked page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_run_through_app()  # on first import, i.e. the first run of this server process


def settings() -> Settings:
    """Settings from the environment (read on every rerun: cheap, and tests can change them)."""
    return Settings.from_env()


SIDECARS = (COHORTS_FILE, SUSPECTS_FILE)  # written beside a bundle by the dashboard; not part of the bundle


def _mtime(path: Path) -> float:
    """When a folder's files last changed (a bundle's own files: saving a cohort does not reload the bundle)."""
    if not path.is_dir():
        return 0.0
    return max((p.stat().st_mtime for p in path.iterdir() if p.name not in SIDECARS and not p.name.startswith(".")),
               default=0.0)


def _file_mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


@st.cache_resource(max_entries=2)
def _load_model(model_dir: str, mtime: float) -> Checkpoint:
    from core.model import load_checkpoint

    return load_checkpoint(model_dir)


@st.cache_resource(max_entries=4)
def _load_onnx(path: str, mtime: float):
    from core.onnx_model import OnnxModel

    return OnnxModel(path)


def onnx_models() -> dict[str, Path]:
    """ONNX models (with their spec) in the model folder, by file name: other models Inspect can explain."""
    return {path.name: path for path in sorted(settings().model_dir.glob("*.onnx"))}


def onnx_model(path: Path):
    """The ONNX model at `path` (`core.onnx_model.OnnxModel`, shared read-only), or None after showing why not."""
    from core.onnx_model import OnnxModelError

    try:
        return _load_onnx(str(path), _file_mtime(path) + _file_mtime(Path(f"{path}.json")))
    except OnnxModelError as error:
        st.error(f"Cannot load {path.name}: {error}")
        return None


def model(folder: Path | None = None) -> Checkpoint | None:
    """The configured model (or the checkpoint in `folder`) in eval mode, or None after showing why it cannot be loaded."""
    from core.model import CheckpointError

    folder = folder or settings().model_dir
    try:
        return _load_model(str(folder), _mtime(folder))
    except CheckpointError as error:
        st.error(f"Cannot load the model {folder.name}: {error}")
        return None


def audited_checkpoints() -> dict[str, Path]:
    """Other FaceAudit checkpoints whose audits are in the model folder (`core.bundle.audited_checkpoints`)."""
    return audited_checkpoints_of(settings().model_dir)


def bundle_model(bundle: Bundle) -> Checkpoint | None:
    """The checkpoint that made `bundle` (by weights id, see `core.bundle.bundle_model_dir`), or None if not here."""
    from core.model import CheckpointError

    folder = bundle_model_dir(bundle.metrics, settings().model_dir)
    if folder is None:
        return None
    try:
        return _load_model(str(folder), _mtime(folder))
    except CheckpointError:
        return None


SHOWN_ROWS = 1_000  # a table on a page shows at most this many rows; its download has them all


def long_table(frame: pd.DataFrame, file_stem: str, key: str) -> None:
    """`frame` as a table of at most `SHOWN_ROWS` rows; beyond that, how many there are and every row as a CSV
    built on the click (a million-row audit never goes into a widget)."""
    st.dataframe(frame.head(SHOWN_ROWS), hide_index=True)
    if len(frame) > SHOWN_ROWS:
        st.caption(f"The first {SHOWN_ROWS:,} of {len(frame):,} rows.")
        st.download_button(f"Download all {len(frame):,} rows (CSV)", partial(csv_bytes, frame),
                           file_name=f"{file_stem}.csv", mime="text/csv", key=key, on_click="ignore")


def plain(text: object) -> str:
    """`text` with Markdown's special characters escaped: bundle text shows as written, never as links or images."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", str(text))


def model_meta() -> dict[str, Any] | None:
    """The model's config.json (backbone, training, metrics) without loading torch; None if absent."""
    path = settings().model_dir / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def detector() -> FaceDetector:
    """The face detector of the thread running this session's script (OpenCV's keeps per-call state)."""
    from core.faces import thread_detector

    return thread_detector()


@st.cache_resource(max_entries=8, show_spinner="Loading audit bundle…")
def _load_bundle(path: str, mtime: float) -> Bundle:
    """One bundle shared by every session, read-only (st.cache_data would copy a million rows on every call), without
    the columns no page shows."""
    return read_bundle(path, leave_out=UNSHOWN_COLUMNS)


def bundle_choices() -> dict[str, Path]:
    """Bundles of the model folder plus the one the user pointed to in the sidebar."""
    choices = discover_bundles(settings().model_dir)
    extra = st.session_state.get("bundle_extra", "").strip()
    if extra:
        choices[f"{Path(extra).name} (your folder)"] = Path(extra).expanduser()
    return choices


def load_bundle_at(path: Path) -> Bundle | None:
    """A bundle folder, or None after showing why it cannot be read."""
    try:
        return _load_bundle(str(path), _mtime(Path(path)))
    except BundleError as error:
        st.error(str(error))
        return None


def current_bundle_name() -> str | None:
    """The name of the bundle picked in the sidebar (the first one before the sidebar has run)."""
    choices = bundle_choices()
    name = st.session_state.get("bundle_name")
    return name if name in choices else next(iter(choices), None)


def _current_path() -> Path | None:
    """The folder of the bundle picked in the sidebar, or None after saying that there are no bundles."""
    choices = bundle_choices()
    if not choices:
        st.warning(f"No audit bundles found in {settings().model_dir / 'audits'}. Create one with "
                   "`python -m training.evaluate --dataset fairface-sample --out models/default/audits/fairface-sample`.")
        return None
    return choices[current_bundle_name()]


def _say_whose(metrics: dict[str, Any]) -> None:
    """Say so when a bundle was made by another model than the loaded one."""
    meta = model_meta()
    model_id = checkpoint_id(meta) if meta else None
    if model_id and metrics.get("model_id") not in (model_id, None):
        st.info(f"This bundle was made by model {metrics.get('model_id')!r}, not the loaded model "
                f"{model_id!r}: its metrics describe that model.")


def current_bundle() -> Bundle | None:
    """The bundle picked in the sidebar, or None after showing why there is none."""
    path = _current_path()
    bundle = load_bundle_at(path) if path else None
    if bundle is not None:
        _say_whose(bundle.metrics)
    return bundle


@st.cache_data(max_entries=16, show_spinner=False)
def _bundle_metrics(path: str, mtime: float) -> dict[str, Any]:
    return read_bundle_metrics(path)


def current_bundle_metrics() -> tuple[Path, dict[str, Any]] | None:
    """The folder and metrics.json of the bundle picked in the sidebar, without reading its predictions; or None
    after showing why there is none."""
    path = _current_path()
    if path is None:
        return None
    try:
        metrics = _bundle_metrics(str(path), _mtime(path))
    except BundleError as error:
        st.error(str(error))
        return None
    _say_whose(metrics)
    return path, metrics


def filters() -> dict[str, list[str]]:
    """The sidebar's choices: column -> chosen values, for every column with a choice (labels and the bundle's own)."""
    return {key.removeprefix("filter_"): list(value) for key, value in sorted(st.session_state.items())
            if key.startswith("filter_") and value}


@st.cache_data(max_entries=16, show_spinner=False)
def _cohorts(path: str, mtime: float) -> list[Cohort]:
    return read_cohorts(path)


def cohorts(bundle_path: str | Path) -> list[Cohort]:
    """The cohorts saved beside a bundle; none after showing why its cohorts file cannot be read."""
    try:
        return _cohorts(str(bundle_path), _file_mtime(Path(bundle_path) / COHORTS_FILE))
    except CohortError as error:
        st.error(str(error))
        return []


@st.cache_data(max_entries=16, show_spinner=False)
def _suspects(path: str, mtime: float) -> pd.DataFrame:
    return read_suspects(path)


def suspects_at(bundle_path: str | Path) -> pd.DataFrame:
    """The faces marked as label suspects beside a bundle (`core.suspects`); none after showing why not."""
    try:
        return _suspects(str(bundle_path), _file_mtime(Path(bundle_path) / SUSPECTS_FILE))
    except CohortError as error:
        st.error(str(error))
        return pd.DataFrame(columns=SUSPECT_COLUMNS)


@st.cache_data(max_entries=8, show_spinner="Metrics with and without label suspects…")
def suspect_effect(path: str, selection: tuple, keys: tuple, _frame: pd.DataFrame, _marked: pd.Index) -> pd.DataFrame:
    """`core.suspects.with_and_without`, cached by bundle, selection and marked faces (the frame is not hashed)."""
    return with_and_without(_frame, _marked)


@st.cache_data(max_entries=16, show_spinner="Calibration per group…")
def _calibration(path: str, mtime: float, filters_items: tuple, head: str, by: tuple[str, ...]) -> pd.DataFrame:
    return calibration_table(_selected(path, mtime, filters_items), head, list(by))


def calibration(bundle: Bundle, head: str, by: list[str]) -> pd.DataFrame:
    """`core.calibration.calibration_table` of `bundle` under the sidebar's selection, cached."""
    return _calibration(str(bundle.path), _mtime(Path(bundle.path)), frozen_filters(), head, tuple(by))


@st.cache_data(max_entries=16, show_spinner=False)
def _reliability_curves(path: str, mtime: float, filters_items: tuple, head: str, by: tuple[str, ...],
                        keys: tuple) -> dict[str, pd.DataFrame]:
    frame = _selected(path, mtime, filters_items)
    members = group_members(frame, list(by)) if by else {}
    return reliability_curves_of(frame, head, {"all faces": None} | {group_label(key): members[key] for key in keys})


def reliability_curves(bundle: Bundle, head: str, by: list[str], keys: list) -> dict[str, pd.DataFrame]:
    """`core.calibration.reliability_curves` of all faces and of the groups `keys` of `by`, under the sidebar's
    selection, cached."""
    return _reliability_curves(str(bundle.path), _mtime(Path(bundle.path)), frozen_filters(), head, tuple(by),
                               tuple(keys))


@st.cache_data(max_entries=8, show_spinner="Comparing the cohorts…")
def _side_by_side(path: str, mtime: float, filters_items: tuple, a: Cohort | None, b: Cohort | None,
                  metrics: tuple[str, ...]) -> tuple[pd.DataFrame, int]:
    frame = filter_frame(_load_bundle(path, mtime).predictions, {column: list(values) for column, values in filters_items})
    return side_by_side(frame, a, b, list(metrics))


def cohorts_side_by_side(bundle: Bundle, a: Cohort | None, b: Cohort | None,
                         metrics: list[str]) -> tuple[pd.DataFrame, int]:
    """`core.cohorts.side_by_side` of `bundle` under the sidebar's filter (not its cohort: the page picks both), cached.

    Raises:
        CohortError: a cohort does not apply to this bundle.
    """
    filters_items = tuple((column, tuple(values)) for column, values in filters().items())
    return _side_by_side(str(bundle.path), _mtime(Path(bundle.path)), filters_items, a, b, tuple(metrics))


def current_cohort() -> Cohort | None:
    """The cohort picked in the sidebar (saved beside the bundle, or one this session made), or None."""
    name = st.session_state.get("cohort_name")
    if not name:
        return None
    choices = bundle_choices()
    bundle_name = current_bundle_name()
    saved = {c.name: c for c in cohorts(choices[bundle_name])} if bundle_name else {}
    return (saved | st.session_state.get("session_cohorts", {})).get(name)


def leave_out_suspects() -> bool:
    return bool(st.session_state.get("leave_out_suspects"))


WHOLE_BUNDLE = ((), None, ())  # `frozen_filters` with nothing chosen: every face


def frozen_filters() -> tuple:
    """The sidebar's selection (filter, cohort, suspects left out) as a hashable value: cache keys, `select_frozen`."""
    cohort = current_cohort()
    bundle_name = current_bundle_name()
    left_out = ()
    if leave_out_suspects() and bundle_name:
        left_out = tuple(face_keys(suspects_at(bundle_choices()[bundle_name])))
    return (tuple((k, tuple(v)) for k, v in filters().items()),
            json.dumps(cohort.to_dict()) if cohort else None, left_out)


def select_frozen(frame: pd.DataFrame, frozen: tuple) -> pd.DataFrame:
    """`frame` under a selection from `frozen_filters` (usable off the script's thread)."""
    filters_items, cohort_json, left_out = frozen
    return select(frame, dict(filters_items), Cohort.from_dict(json.loads(cohort_json)) if cohort_json else None,
                  left_out)


def _selected(path: str, mtime: float, filters_items: tuple) -> pd.DataFrame:
    """The predictions of the cached bundle at `path` under a selection from `frozen_filters` (for cached tables)."""
    return select_frozen(_load_bundle(path, mtime).predictions, filters_items)


def selection_label(describe: bool = True) -> dict[str, list[str]]:
    """The sidebar filter plus the cohort (with its conditions if `describe`) and suspects left out, as exports state them."""
    cohort = current_cohort()
    extra = {"cohort": [f"{cohort.name} ({cohort.describe()})" if describe else cohort.name]} if cohort else {}
    return filters() | extra | ({"label suspects": ["left out"]} if leave_out_suspects() else {})


def filtered_predictions(bundle: Bundle) -> pd.DataFrame:
    """Bundle predictions under the sidebar's selection: filter, cohort, and label suspects left out if asked."""
    try:
        return select_frozen(bundle.predictions, frozen_filters())
    except CohortError as error:
        st.error(f"The cohort cannot be applied to this bundle: {error}. Showing the filter without it.")
        return filter_frame(bundle.predictions, filters())


@st.cache_data(max_entries=8)
def _filter_options(path: str, mtime: float) -> dict[str, list[str]]:
    stored = _stored_overview(path, mtime)  # a stored Overview has them: no read of the predictions
    return stored.filter_options if stored else filter_options_of(_load_bundle(path, mtime).predictions)


def filter_options(bundle: Bundle) -> dict[str, list[str]]:
    """Columns of `bundle` that can filter and group, with their values in natural order."""
    return _filter_options(str(bundle.path), _mtime(Path(bundle.path)))


def _options_of(choices: dict[str, Path], name: str | None) -> dict[str, list[str]]:
    """`filter_options` of the named bundle, or none when there is none or it cannot be read (its page says why)."""
    try:
        return _filter_options(str(choices[name]), _mtime(choices[name])) if name else {}
    except BundleError:
        return {}


def keep_choices(key: str, options: list[str]) -> None:
    """Before a widget is drawn: drop stored choices that are not among its options (they belonged to another bundle)."""
    if key in st.session_state:
        st.session_state[key] = [value for value in st.session_state[key] if value in options]


def _restore_view(choices: dict[str, Path]) -> None:
    """On a session's first run: the bundle and filters its URL names (see `core.view`); problems are kept to show."""
    if "view_restored" in st.session_state:
        return
    st.session_state["view_restored"] = True
    params = {name: st.query_params.get_all(name) for name in st.query_params}
    wanted = next(iter(params.get("bundle", [])[-1:]), None)
    name = wanted if wanted in choices else current_bundle_name()
    options = _options_of(choices, name)
    saved = [cohort.name for cohort in cohorts(choices[name])] if name else []
    view = parse_view(params, list(choices), {column: list(values) for column, values in labels.CLASSES.items()} | options,
                      saved)
    if view.bundle:
        st.session_state["bundle_name"] = view.bundle
    if view.cohort:
        st.session_state["cohort_name"] = view.cohort
    for column, values in view.filters.items():
        st.session_state[f"filter_{column}"] = values
    st.session_state["view_problems"] = view.problems


def keep_sidebar() -> None:
    """Before `st.switch_page`: re-set the sidebar's choices through the state API, else the new page's run
    (which gets no widget values from the browser) starts them over (the bundle back to the first one)."""
    for key in [k for k in st.session_state if k in ("bundle_name", "bundle_extra", "cohort_name", "leave_out_suspects")
                or k.startswith("filter_")]:
        st.session_state[key] = st.session_state[key]


def sidebar() -> None:
    """Bundle picker and the persistent filter over the labels and the bundle's own columns; every page respects them.

    The view (bundle and filter) is read from the URL on a session's first run and written back on every run.
    """
    choices = bundle_choices()
    _restore_view(choices)
    with st.sidebar:
        if choices:
            st.selectbox("Audit dataset", list(choices), key="bundle_name")
        st.text_input("Other bundle folder", key="bundle_extra", placeholder="path/to/bundle",
                      help="A folder written by `python -m training.evaluate`.")
        name = current_bundle_name()
        options = _options_of(choices, name)
        st.subheader("Filter")
        for column, names in labels.CLASSES.items():  # the whole taxonomy: choices survive a change of bundle
            st.multiselect(column.replace("_", " "), list(names), key=f"filter_{column}", placeholder="all")
        own = [c for c in options if c not in labels.CLASSES]
        if own:
            with st.expander(f"More columns ({len(own)})", expanded=any(st.session_state.get(f"filter_{c}") for c in own)):
                for column in own:
                    keep_choices(f"filter_{column}", options[column])
                    st.multiselect(column, options[column], key=f"filter_{column}", placeholder="all",
                                   help=f"A column of the audited dataset (at most {MAX_GROUP_VALUES} values) or of detection.")
        saved = [cohort.name for cohort in cohorts(choices[name])] if name else []
        names = saved + [made for made in st.session_state.get("session_cohorts", {}) if made not in saved]
        if st.session_state.get("cohort_name") not in (None, *names):  # deleted, or saved beside another bundle
            st.session_state["cohort_name"] = None
        st.selectbox("Cohort", [None, *names], key="cohort_name",
                     format_func=lambda n: "all faces" if n is None else n if n in saved else f"{n} (not saved)",
                     help="Named cohorts of this bundle (make them on the Cohorts and Error analysis pages); "
                          "applied after the filter on every page and in reports.")
        st.checkbox("Leave out label suspects", key="leave_out_suspects",
                    help="Faces marked “label suspect” in the error gallery (saved beside the bundle).")
        problems = st.session_state.pop("view_problems", None)  # said once, on the run that opened the link
        if problems:
            st.warning("This link asked for what is not here: " + "; ".join(map(plain, problems))
                       + ". The rest of the view is applied.")
    shown = {column: values for column, values in filters().items() if column in labels.CLASSES or column in options}
    cohort = st.session_state.get("cohort_name")
    st.query_params.from_dict(view_params(name, shown, cohort if cohort in saved else None))


@st.cache_resource(max_entries=2, show_spinner=False)
def _row_values(path: str, mtime: float, filters_items: tuple) -> pd.DataFrame:
    """`core.fairness.row_values` of a bundle under a selection, shared (read-only) by the tables made from it."""
    return row_values(_selected(path, mtime, filters_items))


@st.cache_data(max_entries=16, show_spinner="Headline metrics, gaps and worst groups…")
def _overview(path: str, mtime: float, filters_items: tuple) -> Overview:
    return overview(_selected(path, mtime, filters_items), values=_row_values(path, mtime, filters_items))


@st.cache_data(max_entries=8, show_spinner=False)
def _stored_overview(path: str, mtime: float) -> Overview | None:
    return stored_overview(path)


def page_overview(path: Path) -> Overview | None:
    """`core.overview.overview` of the bundle at `path` under the sidebar's selection, cached: of every face, as the
    bundle stored it when current (its predictions not read), else computed; None after showing why it cannot be."""
    frozen = frozen_filters()
    stored = _stored_overview(str(path), _mtime(path)) if frozen == WHOLE_BUNDLE else None
    try:
        return stored or _overview(str(path), _mtime(path), frozen)
    except BundleError as error:
        st.error(str(error))
        return None


_prefetched: set[tuple[str, float]] = set()


def prefetch_bundle(path: Path) -> None:
    """Read the bundle at `path` into the cache on a thread of its own, once, for the pages that need its rows (one
    asking for it meanwhile waits for this read instead of starting another)."""
    key = (str(path), _mtime(path))
    if key not in _prefetched:
        _prefetched.add(key)
        threading.Thread(target=_load_quietly, args=key, name="faceaudit-prefetch", daemon=True).start()


@st.cache_resource(max_entries=8, show_spinner=False)  # no spinner for the read inside: this thread has no page
def _load_quietly(path: str, mtime: float) -> None:
    with contextlib.suppress(BundleError):  # the page that needs the rows will say what is wrong
        _load_bundle(path, mtime)


@st.cache_resource(max_entries=4, show_spinner="Finding the mistakes…")
def _mistakes(path: str, mtime: float, filters_items: tuple, head: str, options: tuple) -> Mistakes:
    frame = _selected(path, mtime, filters_items)
    return find_mistakes(frame, head, **dict(options))


def gallery_mistakes(bundle: Bundle, head: str, **options: Any) -> Mistakes:
    """`core.gallery.find_mistakes` of `bundle` under the sidebar's selection: one shared copy per view, read-only
    (paging and switching pages reuse it; a million-row bundle can have half a million mistakes)."""
    frozen = tuple((name, tuple(value) if isinstance(value, list) else value) for name, value in sorted(options.items()))
    return _mistakes(str(bundle.path), _mtime(Path(bundle.path)), frozen_filters(), head, frozen)


@st.cache_data(max_entries=16, show_spinner="Comparing bundles…")
def _comparison(sources: tuple[tuple[str, str, float], ...], filters_items: tuple, by: tuple[str, ...],
                metrics: tuple[str, ...]) -> Comparison:
    bundles = {name: _load_bundle(path, mtime) for name, path, mtime in sources}
    frames = {name: select_frozen(bundle.predictions, filters_items) for name, bundle in bundles.items()}
    return compare_bundles(frames, by=list(by), metrics=list(metrics),
                           notes={name: bundle_note(bundle.metrics) for name, bundle in bundles.items()},
                           datasets={name: bundle.metrics.get("dataset") for name, bundle in bundles.items()})


def comparison_inputs(names: list[str]) -> tuple[tuple[str, str, float], ...] | None:
    """(name, path, mtime) of the named bundles, each readable and not empty under the filter; None after showing why."""
    choices = bundle_choices()
    for name in names:
        bundle = load_bundle_at(choices[name])
        if bundle is None:
            return None
        if filtered_predictions(bundle).empty:
            st.warning(f"No faces of {name} match the filter: nothing to compare.")
            return None
    return tuple((name, str(choices[name]), _mtime(Path(choices[name]))) for name in names)


def compare_inputs(sources: tuple[tuple[str, str, float], ...], filters_items: tuple, by: list[str],
                   metrics: list[str]) -> Comparison:
    """`comparison` from `comparison_inputs` and frozen filters: usable off the script's thread (deferred downloads)."""
    return _comparison(sources, filters_items, tuple(by), tuple(metrics))


def comparison(names: list[str], by: list[str], metrics: list[str]) -> Comparison | None:
    """The named bundles under the sidebar filter, compared with the first; None after showing why not."""
    sources = comparison_inputs(names)
    return None if sources is None else compare_inputs(sources, frozen_filters(), by, metrics)


@st.cache_resource
def explanation_cache() -> ExplanationCache:
    """Explanations shared across reruns and users, keyed by chip hash, model id and settings."""
    from core.explain import ExplanationCache

    return ExplanationCache(max_entries=128)


@st.cache_resource
def mean_face() -> np.ndarray:
    return np.asarray(Image.open(MEAN_FACE_FILE).convert("RGB"))


@st.cache_data(max_entries=4)
def _load_saliency(path: str, mtime: float) -> dict:
    from core.saliency import load_saliency

    return load_saliency(path)


def saliency(path: Path) -> dict:
    """Per-group saliency maps of a bundle, reloaded when the file changes."""
    return _load_saliency(str(path), path.stat().st_mtime)
