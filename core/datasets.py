"""Dataset readers: UTKFace folders, FairFace CSVs, the London set and any manifest CSV.

Each reader returns a `Dataset`: one tidy table with the same columns whatever the source, and a
rejects table that accounts for every row or file that could not be used, with the reason.

Table columns: `file` (path as the source names it, the row's stable id), `path` (absolute),
`source`, `age` (Int64, may be missing), `age_bin`, `gender`, `race` (categoricals in the order of
`core.labels`, may be missing), then any extra columns of the source (kept as grouping attributes).
"""

from __future__ import annotations

import csv
import io
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import labels
from core.config import DataNotFoundError
from core.errors import FaceAuditError
from core.fairness import MAX_GROUP_VALUES, is_identity

__all__ = [
    "LABEL_COLUMNS",
    "MANIFEST_ALIASES",
    "BOX_COLUMNS",
    "REJECT_COLUMNS",
    "Dataset",
    "ManifestError",
    "read_utkface",
    "read_fairface",
    "read_london_set",
    "read_manifest",
    "read_label_csv",
    "aliased",
]

LABEL_COLUMNS = ("age", "age_bin", "gender", "race")
BOX_COLUMNS = labels.BOX_COLUMNS
BASE_COLUMNS = ("file", "path", "source", *LABEL_COLUMNS)
REJECT_COLUMNS = ("file", "path", "source", "reason")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}

# UTKFace: age_gender_race_timestamp.jpg.chip.jpg. Two real names deviate harmlessly (a space
# before ".jpg", a missing dot before "jpg"); both still have four unambiguous fields and are kept.
_UTK_SUFFIX = re.compile(r"\s*\.?jpg\.chip\.jpg$")
_UTK_FIELDS = ("age", "gender code", "race code", "timestamp")


class ManifestError(FaceAuditError, ValueError):
    """A manifest or label CSV that cannot be read as a whole (missing columns, not a CSV)."""


@dataclass
class Dataset:
    """A labeled image set: usable rows, rejected rows, and notes on rows kept despite oddities."""

    name: str
    table: pd.DataFrame
    rejects: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    root: Path | None = None  # the folder `file` paths are relative to

    @property
    def extra_columns(self) -> list[str]:
        """Columns beyond the standard ones: grouping attributes from the source."""
        return [column for column in self.table.columns if column not in BASE_COLUMNS]


def _categorical(values: Iterable[object], categories: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical(list(values), categories=list(categories), ordered=True)


def _build(name: str, rows: list[dict], rejects: list[dict], extra: list[str], root: Path,
           notes: list[str] | None = None) -> Dataset:
    table = pd.DataFrame(rows, columns=[*BASE_COLUMNS, *extra])
    table["age"] = pd.array(table["age"].tolist(), dtype="Int64")
    table["age_bin"] = _categorical(table["age_bin"], labels.AGE_BINS)
    table["gender"] = _categorical(table["gender"], labels.GENDERS)
    table["race"] = _categorical(table["race"], labels.RACES)
    reject_table = pd.DataFrame(rejects, columns=list(REJECT_COLUMNS))
    return Dataset(name=name, table=table, rejects=reject_table, notes=notes or [], root=root)


_MISSING_TEXT = {"", "na", "n/a", "nan", "none", "null", "unknown"}


def _missing(value: object) -> bool:
    """True for an absent label: empty, NaN, or a conventional "not available" word."""
    return value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip().lower() in _MISSING_TEXT


def _parse_labels(raw: dict[str, object]) -> dict[str, object]:
    """Turn raw label values (any subset of LABEL_COLUMNS) into canonical ones; raise LabelError."""
    age = None if _missing(raw.get("age")) else labels.parse_age(raw["age"])
    age_bin = None if _missing(raw.get("age_bin")) else labels.parse_age_bin(raw["age_bin"])
    if age is not None:
        derived = labels.age_to_bin(age)
        if age_bin is not None and age_bin != derived:
            raise labels.LabelError(f"age {age} is not in age bin {age_bin!r}")
        age_bin = derived
    return {
        "age": age,
        "age_bin": age_bin,
        "gender": None if _missing(raw.get("gender")) else labels.parse_gender(raw["gender"]),
        "race": None if _missing(raw.get("race")) else labels.parse_race(raw["race"]),
    }


def parse_utkface_name(name: str) -> dict[str, object]:
    """Parse a UTKFace file name into labels.

    Example:
        >>> parse_utkface_name("26_1_2_20170116174525125.jpg.chip.jpg")["race"]
        'Asian'

    Raises:
        LabelError: the name does not have the four fields, or a code is outside the taxonomy.
    """
    match = _UTK_SUFFIX.search(name)
    if match is None:
        raise labels.LabelError("name does not end in '.jpg.chip.jpg'")
    fields = name[: match.start()].split("_")
    not_numbers = [part for part in fields if not (part.isascii() and part.isdigit())]
    if len(fields) == len(_UTK_FIELDS) and not_numbers:
        raise labels.LabelError(f"field(s) {not_numbers} are not whole numbers written in the digits 0-9")
    if len(fields) != len(_UTK_FIELDS):
        raise labels.LabelError(
            f"expected age_gender_race_timestamp.jpg.chip.jpg, found {len(fields)} field(s) {fields}"
            + (" (the race field is missing)" if len(fields) == 3 and len(fields[2]) > 2 else "")
        )
    age, gender_code, race_code, _ = (int(part) for part in fields)
    if gender_code >= len(labels.GENDERS):
        raise labels.LabelError(f"unknown gender code {gender_code}; valid: 0 (Male), 1 (Female)")
    if race_code >= len(labels.RACES):
        raise labels.LabelError(f"unknown race code {race_code}; valid: 0-4 ({', '.join(labels.RACES)})")
    return _parse_labels({"age": age, "gender": labels.GENDERS[gender_code], "race": labels.RACES[race_code]})


def read_utkface(folder: str | Path) -> Dataset:
    """Read a UTKFace folder: labels come from the file names.

    Every file in the folder appears either in `table` or in `rejects` (with the reason).

    Raises:
        DataNotFoundError: `folder` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"UTKFace folder {folder} does not exist (set FACEAUDIT_DATA or pass --data)")
    rows, rejects, irregular = [], [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            row = parse_utkface_name(path.name)
        except labels.LabelError as error:
            rejects.append({"file": path.name, "path": str(path), "source": "utkface", "reason": str(error)})
            continue
        if not path.name.endswith(".jpg.chip.jpg") or " " in path.name:
            irregular.append(path.name)
        rows.append({"file": path.name, "path": str(path), "source": "utkface", **row})
    notes = [f"kept despite an irregular but unambiguous name: {name!r}" for name in irregular]
    return _build("utkface", rows, rejects, extra=[], root=folder, notes=notes)


# Header names FaceAudit reads; matched case-insensitively (`AGE`, `Gender`) and stored lower-case.
_KNOWN_HEADERS = {"path", "file", "source", *LABEL_COLUMNS, "ethnicity", "service_test"}
# Other names auditors' manifests give FaceAudit's columns (compared as `labels.column_key` writes them): read as
# that column, with a note, where the manifest has no column of FaceAudit's own name.
MANIFEST_ALIASES = {
    "path": ("image", "image_path", "img", "img_path", "photo", "photo_path", "filename", "file_name", "filepath",
             "file_path", "file"),
    "age": ("age_years", "age_in_years", "age_(years)"),
    "gender": ("sex",),
    "race": ("ethnicity",),
    "age_bin": ("age_group", "age_range", "age_bracket"),
}
_DELIMITERS = ",;\t|"


@dataclass
class _Csv:
    """A label file read as text: rows with the header's fields, rejects for the others, notes on how it was read,
    and the columns read under another name (FaceAudit's name: (its header, as written in the file))."""

    frame: pd.DataFrame
    rejects: list[dict]
    notes: list[str]
    read_as: dict[str, tuple[str, str]] = field(default_factory=dict)


def _rows(reader: Iterator[list[str]], csv_path: Path) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as error:  # e.g. a field over the csv module's size limit
        raise ManifestError(f"{csv_path} line {reader.line_num}: {error}") from None


def aliased(columns: Iterable[object], column: str) -> list[object]:
    """The `columns` named as an alias of FaceAudit's `column` (`MANIFEST_ALIASES`: `Image Path` for path)."""
    return [name for name in columns if labels.column_key(name) in MANIFEST_ALIASES.get(column, ())]


def _read_as(header: list[str], written: list[str], aliases: dict[str, tuple[str, ...]],
             csv_path: Path) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The header with each alias renamed to the column it stands for, where that column is absent; and what was
    renamed (FaceAudit's name: (the header, as `written` in the file))."""
    header, read_as = list(header), {}
    for column, names in aliases.items():
        if column in header:
            continue
        found = [index for index, name in enumerate(header) if labels.column_key(name) in names]
        if len(found) > 1:
            raise ManifestError(f"{csv_path}: columns {[written[i] for i in found]} could each be {column!r}; "
                                f"name one of them {column!r}")
        if found:
            read_as[column] = (header[found[0]], written[found[0]])
            header[found[0]] = column
    return header, read_as


def read_label_csv(csv_path: Path, source: str, required: Iterable[str] = (),
                   aliases: dict[str, tuple[str, ...]] | None = None) -> _Csv:
    """Read a label CSV robustly: UTF-8 (or Latin-1, noted), any of , ; tab | as delimiter, header names
    case-insensitive, `aliases` read as the columns they stand for; a row with the wrong number of fields is a
    reject naming its line, never a shifted row.

    Raises:
        ManifestError: the file is missing, a folder, binary, empty, or lacks a required column.
    """
    if csv_path.is_dir():
        raise ManifestError(f"{csv_path} is a folder; give the CSV file inside it")
    if not csv_path.is_file():
        raise ManifestError(f"label file {csv_path} does not exist")
    raw, notes = csv_path.read_bytes(), []
    if b"\x00" in raw:
        raise ManifestError(f"{csv_path} contains NUL bytes: not a text CSV (export it as CSV from the spreadsheet)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        notes.append(f"{csv_path.name} is not UTF-8; it was read as Latin-1 (save it as UTF-8 to be sure)")
    first_line = re.split(r"\r\n?|\n", text, maxsplit=1)[0]
    if not first_line.strip():
        raise ManifestError(f"{csv_path} is empty: it needs a header line with {', '.join(required)}")
    delimiter = max(_DELIMITERS, key=first_line.count) if any(d in first_line for d in _DELIMITERS) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        header = [str(name).strip() for name in next(reader)]
    except csv.Error as error:
        raise ManifestError(f"{csv_path} line 1: {error}") from None
    written, header = header, [name.lower() if name.lower() in _KNOWN_HEADERS else name for name in header]
    header, read_as = _read_as(header, written, aliases or {}, csv_path)
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise ManifestError(f"{csv_path}: column(s) {twice} appear twice (header names are case-insensitive)")
    missing = [column for column in required if column not in header]
    if missing:
        also = [f"{column!r} (or {', '.join(aliases[column])})" for column in missing if column in (aliases or {})]
        raise ManifestError(f"{csv_path}: missing column(s) {missing}; found {header}"
                            + ("" if delimiter == "," else f" (read with delimiter {delimiter!r})")
                            + (f"; name them {', '.join(also)}" if also else ""))
    records, rejects = [], []
    key = header.index(next(iter(required))) if required else 0
    for row in _rows(reader, csv_path):
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) != len(header):
            rejects.append({"file": row[key].strip() if len(row) > key else f"(line {reader.line_num})",
                            "path": str(csv_path), "source": source,
                            "reason": f"{csv_path.name} line {reader.line_num}: {len(row)} fields where the header has "
                                      f"{len(header)}; quote values that contain {delimiter!r}"})
            continue
        records.append(row)
    return _Csv(pd.DataFrame(records, columns=header, dtype=str), rejects, notes, read_as)


class _ImageFinder:
    """Finds the image a label file names, also where it was written on Windows (backslashes; a name whose letter
    case differs from the file's, which Windows and macOS open anyway), and says how many it found so."""

    _URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
    _DRIVE = re.compile(r"^[a-z]:[\\/]", re.IGNORECASE)
    _SLASHED, _ANY_CASE = "with \\ as the folder separator", "ignoring letter case"

    def __init__(self, root: Path) -> None:
        self.root, self.found_by = root, {self._SLASHED: [], self._ANY_CASE: []}
        self._listings: dict[Path, dict[str, list[str]]] = {}

    def find(self, file: str) -> Path:
        """The image `file` names, relative to the root unless absolute.

        Raises:
            FileNotFoundError: with the reason (missing, a web address, another machine's drive).
        """
        if file.lower().startswith("file://"):
            file = urllib.parse.unquote(urllib.parse.urlsplit(file).path)
        elif self._URL.match(file):
            raise FileNotFoundError(f"{file} is a web address: FaceAudit reads image files; download the images and "
                                    "list their paths")
        elif self._DRIVE.match(file) and not (self.root / file).is_file():
            raise FileNotFoundError(f"{file} is a Windows drive path: list the images relative to the label file's "
                                    "folder")
        path = (self.root / file).resolve()
        if path.is_file():
            return path
        slashed = (self.root / file.replace("\\", "/")).resolve()
        if slashed != path and slashed.is_file():
            self.found_by[self._SLASHED].append(file)
            return slashed
        if (cased := self._ignoring_case(slashed)) is not None:
            self.found_by[self._ANY_CASE].append(file)
            return cased
        raise FileNotFoundError(f"missing file {path}")

    def _ignoring_case(self, path: Path) -> Path | None:
        """The one existing file whose path equals `path` but for letter case, else None."""
        found = Path(path.anchor)
        for part in path.parts[1:]:
            if (found / part).exists():
                found = found / part
                continue
            if found not in self._listings:
                listing: dict[str, list[str]] = {}
                for entry in (os.listdir(found) if found.is_dir() else []):
                    listing.setdefault(entry.casefold(), []).append(entry)
                self._listings[found] = listing
            names = self._listings[found].get(part.casefold(), [])
            if len(names) != 1:
                return None
            found = found / names[0]
        return found if found.is_file() else None

    def notes(self, source: str) -> list[str]:
        return [f"{len(files)} {source} image path(s) name a file only as Windows reads them, {how}: e.g. "
                f"'{files[0]}'" for how, files in self.found_by.items() if files]


def _parse_box(record: dict) -> dict[str, float | None]:
    """A row's labelled face box (`BOX_COLUMNS`), all None where its cells are empty; raise LabelError if malformed."""
    cells = [record[column] for column in BOX_COLUMNS]
    if all(_missing(cell) for cell in cells):
        return dict.fromkeys(BOX_COLUMNS)
    try:
        box = [float(str(cell).strip()) for cell in cells]
    except ValueError:
        box = []
    if len(box) != 4 or not all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise labels.LabelError(f"face box {', '.join(str(cell) for cell in cells)} is not four numbers x, y, w, h "
                                "with a positive width and height")
    return dict(zip(BOX_COLUMNS, box))


def _read_rows(frame: pd.DataFrame, root: Path, source: str, path_column: str,
               label_columns: dict[str, str], extra: list[str]) -> tuple[list[dict], list[dict], list[str]]:
    """Validate each CSV row: file exists, labels (and a face box, `BOX_COLUMNS`) parse. Returns (rows, rejects,
    notes on how files were found)."""
    rows, rejects, finder = [], [], _ImageFinder(root)
    boxed = all(column in frame.columns for column in BOX_COLUMNS)
    for record in frame.to_dict("records"):
        file = str(record[path_column]).strip()
        path = (root / file).resolve() if file else root
        try:
            if not file:
                raise labels.LabelError(f"empty {path_column!r}")
            parsed = _parse_labels({target: record.get(column) for target, column in label_columns.items()})
            if boxed:
                parsed |= _parse_box(record)
            path = finder.find(file)
        except (labels.LabelError, FileNotFoundError) as error:
            rejects.append({"file": file, "path": str(path), "source": source, "reason": str(error)})
            continue
        rows.append({"file": file, "path": str(path), "source": source, **parsed,
                     **{column: _grouping_value(record[column]) for column in extra}})
    return rows, rejects, finder.notes(source)


def _grouping_value(value: object) -> object:
    """An extra column's cell as a grouping value: surrounding spaces dropped ('outdoor ' is 'outdoor'), an empty
    cell missing (shown as such, and out of the way of a column of numbers' order)."""
    text = value.strip() if isinstance(value, str) else value
    return None if text == "" else text


def _quartiles(rows: list[dict], extra: list[str], source: str) -> tuple[list[str], list[str]]:
    """A `<column> (quartile)` grouping column beside each column of numbers with too many values to group by (an
    auditor's brightness or head yaw); returns the extra columns with them, and a note for each."""
    columns, notes = [], []
    for column in extra:
        columns.append(column)
        given = [(row, row[column]) for row in rows if row[column] is not None]
        numbers = pd.to_numeric(pd.Series([value for _, value in given], dtype=object), errors="coerce")
        if not given or numbers.isna().any() or numbers.nunique() <= MAX_GROUP_VALUES or is_identity(column) or (
                numbers.eq(numbers.round()).all() and numbers.is_unique):  # a person's or a photo's number
            continue
        inner = numbers.quantile([0.25, 0.5, 0.75], interpolation="lower").drop_duplicates().to_numpy()
        positions = np.searchsorted(inner, numbers.to_numpy(), side="left")  # a quartile holds its upper edge
        spans = numbers.groupby(positions).agg(["min", "max"])
        names = {position: f"Q{rank} ({span['min']:.3g} to {span['max']:.3g})"  # each named by the values it holds
                 for rank, (position, span) in enumerate(spans.iterrows(), 1)}
        quartile = f"{column} (quartile)"
        for row in rows:
            row[quartile] = None
        for (row, _), position in zip(given, positions):
            row[quartile] = names[position]
        columns.append(quartile)
        notes.append(f"{source}: column {column!r} holds {numbers.nunique():,} different numbers, too many to group "
                     f"by: {quartile!r} groups its rows by quartile")
    return columns, notes


def _case_notes(rows: list[dict], extra: list[str], source: str) -> list[str]:
    """A note for each grouping column with values that differ only in letter case: kept apart, but said."""
    notes = []
    for column in extra:
        spellings: dict[str, set[str]] = {}
        for row in rows:
            if isinstance(value := row[column], str):
                spellings.setdefault(value.casefold(), set()).add(value)
        alike = [sorted(values) for values in spellings.values() if len(values) > 1]
        if alike:
            notes.append(f"{source}: column {column!r} has values that differ only in letter case, kept as separate "
                         f"groups: {' / '.join(map(repr, alike[0]))}" + (f" and {len(alike) - 1} more" if len(alike) > 1
                                                                          else ""))
    return notes


def _outside_note(rows: list[dict], root: Path, source: str) -> list[str]:
    """A note counting images that lie outside the label file's folder (absolute or `..` paths): opened, and said."""
    folder = root.resolve()
    outside = [row["path"] for row in rows if not Path(row["path"]).is_relative_to(folder)]
    if not outside:
        return []
    return [f"{len(outside)} of {len(rows)} {source} images lie outside {folder} (absolute or '..' paths), "
            f"e.g. {outside[0]}; they were opened as given"]


def read_fairface(csv_path: str | Path, image_root: str | Path | None = None, name: str = "fairface") -> Dataset:
    """Read a FairFace label CSV (`file,age,gender,race[,service_test]`; `age` holds age bins).

    The original seven-class race is kept in the extra column `fairface_race`.

    Args:
        csv_path: The label CSV.
        image_root: Folder the `file` paths are relative to (default: the CSV's folder).
        name: Name of the dataset in tables and reports.
    """
    csv_path = Path(csv_path)
    table = read_label_csv(csv_path, name, ["file", "age", "gender", "race"])
    frame = table.frame
    frame["fairface_race"] = frame["race"]
    extra = ["fairface_race", *[c for c in frame.columns if c not in ("file", "age", "gender", "race", "fairface_race")]]
    root = Path(image_root or csv_path.parent)
    rows, rejects, found = _read_rows(frame, root, name, "file", {"age_bin": "age", "gender": "gender", "race": "race"},
                                      extra)
    return _build(name, rows, table.rejects + rejects, extra, root, table.notes + found + _outside_note(rows, root, name))


def read_london_set(folder: str | Path) -> Dataset:
    """Read the Face Research Lab London Set (`labels.csv`: file, face_id, age, gender, ethnicity, expression).

    `ethnicity` maps to race through `labels.LONDON_TO_RACE` and is kept as an extra column.
    """
    csv_path = Path(folder) / "labels.csv"
    table = read_label_csv(csv_path, "london_set", ["file", "age", "gender", "ethnicity"])
    frame = table.frame
    frame["race"] = [labels.LONDON_TO_RACE.get(value.strip().lower(), value) for value in frame["ethnicity"]]
    extra = [c for c in frame.columns if c not in ("file", "age", "gender", "race")]
    rows, rejects, found = _read_rows(frame, csv_path.parent, "london_set", "file",
                                      {"age": "age", "gender": "gender", "race": "race"}, extra)
    return _build("london_set", rows, table.rejects + rejects, extra, csv_path.parent, table.notes + found)


def _parses(parse: Callable[[object], str], value: object) -> bool:
    try:
        parse(value)
    except labels.LabelError:
        return False
    return True


def _seven_races(races: pd.Series, source: str) -> tuple[pd.Series | None, list[str]]:
    """A manifest's race labels as FairFace's seven classes (`fairface_race`), and notes.

    Kept where the labels are written in them (`labels.race7_labels`) and none names a race of the five only
    (Asian, Others), which would not say which of the seven it is.
    """
    known = [value for value in races.dropna().unique()  # an unknown race is its row's reject, not counted here
             if not _missing(value) and _parses(labels.parse_race, value)]
    named = [value for value in known if _parses(labels.parse_race7, value)]
    seven = labels.race7_labels(named)
    if seven is None:  # no race the five merge: written in the five
        return None, []
    if len(named) < len(known):
        five_only = int(races.isin(set(known) - set(named)).sum())
        return None, [(f"{source}: race uses FairFace's seven classes, but {five_only} labels name Asian or Others, "
                       "which do not say which of the seven; race-7 metrics are left out")]
    return races.map(dict(zip(named, seven))), []


_LABEL_PARSERS = {"age": labels.parse_age, "age_bin": labels.parse_age_bin, "gender": labels.parse_gender,
                  "race": labels.parse_race}


def _labels_read_as(table: _Csv, source: str) -> tuple[pd.DataFrame, list[str]]:
    """The manifest's frame with each aliased label column kept where all its values are such labels, and notes;
    another column (Age Group of '25-34', Sex of 0/1) stays a grouping column under its own name, with a note."""
    frame, notes, kept = table.frame, list(table.notes), []
    for column, (header, written) in table.read_as.items():
        parse = _LABEL_PARSERS.get(column)
        odd = sorted({value for value in frame[column] if not _missing(value) and not _parses(parse, value)}) if parse else []
        if odd:
            frame = frame.rename(columns={column: header})
            notes.append(f"{source}: column {written!r} was not read as {column}: {len(odd)} of its values are not "
                         f"{column} labels (e.g. {odd[0]!r}); it is kept as a grouping column")
        else:
            kept.append(f"{written!r} as {column}")
    return frame, ([f"{source}: read column {', '.join(kept)}"] if kept else []) + notes


def _holds_age_bins(ages: pd.Series) -> bool:
    """True where a column named age holds age bins ('50-59'), not years: every label a bin, none a number."""
    given = [value for value in ages if not _missing(value)]
    return bool(given) and all(_parses(labels.parse_age_bin, value) and not _parses(labels.parse_age, value)
                               for value in given)


def read_manifest(csv_path: str | Path, name: str | None = None) -> Dataset:
    """Read any labeled image folder through a manifest CSV.

    The CSV has a `path` column (relative to the CSV's folder; absolute and `..` paths are opened too,
    and counted in the dataset's notes, which the bundle keeps) and any of `age`, `age_bin`,
    `gender`, `race` (case-insensitive names; FairFace race names are accepted and mapped, and kept as
    `fairface_race` when race is written in FairFace's seven classes). Other common names of these columns
    (`MANIFEST_ALIASES`: `image`, `sex`, `ethnicity`, `age_group`, ...) and an age column of bins are read as them,
    with a note. Every other column is kept as an extra grouping attribute, e.g. `skin` or `identity`.

    Raises:
        ManifestError: the CSV is missing, cannot be read as a CSV, or has no `path` column (nor an alias of it).
    """
    csv_path = Path(csv_path)
    name = name or csv_path.stem
    table = read_label_csv(csv_path, name, ["path"], aliases=MANIFEST_ALIASES)
    frame, notes = _labels_read_as(table, name)
    frame = frame.rename(columns={c: f"manifest_{c}" for c in ("file", "source") if c in frame.columns})
    if "age" in frame and "age_bin" not in frame and _holds_age_bins(frame["age"]):
        example = next(value for value in frame["age"] if not _missing(value))
        frame = frame.rename(columns={"age": "age_bin"})
        notes.append(f"{name}: its age column holds age bins (e.g. {example!r}), not years; read as age_bin")
    present = {column: column for column in LABEL_COLUMNS if column in frame.columns}
    if not present:
        others = [c for c in frame.columns if c != "path"]
        notes.append(f"{name} has no label column ({', '.join(LABEL_COLUMNS)}), so the audit shows predictions with "
                     f"no accuracy; its other columns ({', '.join(others) or 'none'}) are kept for grouping. Rename "
                     "a column of labels to one of those names to audit it")
    seven, race_notes = None, []
    if "race" in present and "fairface_race" not in frame:  # a column of that name in the manifest stays as given
        seven, race_notes = _seven_races(frame["race"], name)
    if seven is not None:
        frame.insert(0, "fairface_race", seven)
    boxed = [column for column in BOX_COLUMNS if column in frame.columns]
    if boxed and len(boxed) < len(BOX_COLUMNS):
        raise ManifestError(f"{csv_path}: a labelled face box needs all of {', '.join(BOX_COLUMNS)}; it has "
                            f"{', '.join(boxed)}")
    extra = [c for c in frame.columns if c != "path" and c not in present and c not in BOX_COLUMNS]
    rows, rejects, found = _read_rows(frame, csv_path.parent, name, "path", present, extra)
    extra, quartile_notes = _quartiles(rows, extra, name)
    extra = [*BOX_COLUMNS, *extra] if boxed else extra
    notes += race_notes + found + quartile_notes + _case_notes(rows, extra, name) + _outside_note(rows, csv_path.parent, name)
    return _build(name, rows, table.rejects + rejects, extra, csv_path.parent, notes)
