"""Label-noise triage: faces an auditor marks "label suspect", saved beside the bundle (never in it).

A confident mistake is often a wrong label rather than a wrong model. Marked faces are kept in
`<bundle>/label_suspects.csv` (file, face_index, head, note, marked_at), and every headline metric
can be read with and without them (`with_and_without`).
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from core.cohorts import CohortError, face_keys, write_beside
from core.fairness import HEADLINE_METRICS, overall_metrics

__all__ = ["SUSPECTS_FILE", "SUSPECT_COLUMNS", "read_suspects", "mark_suspect", "mark_suspects", "suspect_index",
           "with_and_without"]

SUSPECTS_FILE = "label_suspects.csv"
SUSPECT_COLUMNS = ["file", "face_index", "head", "note", "marked_at"]


def read_suspects(bundle_dir: str | Path) -> pd.DataFrame:
    """The faces marked as label suspects beside a bundle (an empty table if none)."""
    path = Path(bundle_dir) / SUSPECTS_FILE
    if not path.exists():
        return pd.DataFrame(columns=SUSPECT_COLUMNS)
    try:
        table = pd.read_csv(path, dtype={"file": "string", "head": "string", "note": "string", "marked_at": "string"},
                            keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise CohortError(f"{path} is not a label-suspects file ({error}); fix or delete it") from None
    missing = [column for column in ("file", "face_index") if column not in table]
    if missing:
        raise CohortError(f"{path} lacks the column(s) {', '.join(missing)}; fix or delete it")
    return table.reindex(columns=SUSPECT_COLUMNS)


def mark_suspects(bundle_dir: str | Path, rows: pd.DataFrame, suspect: bool, *, head: str = "", note: str = "") -> int:
    """Mark (or unmark) the faces of bundle rows as label suspects, in one write; returns how many faces changed.

    Marking a face already marked replaces its head and note.
    """
    table = read_suspects(bundle_dir)
    keys = face_keys(rows)
    faces = rows[~keys.duplicated().to_numpy()]
    already = face_keys(table).isin(keys).to_numpy(dtype=bool)
    table = table[~already]
    if suspect:
        added = pd.DataFrame({"file": faces["file"].to_numpy(),
                              "face_index": faces["face_index"].astype("int64").to_numpy() if "face_index" in faces else 0,
                              "head": head, "note": note,
                              "marked_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        table = pd.concat([table, added], ignore_index=True)
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)  # as written: it is read back by file name
    write_beside(bundle_dir, SUSPECTS_FILE, buffer.getvalue())
    return len(faces) - int(already.sum()) if suspect else int(already.sum())


def mark_suspect(bundle_dir: str | Path, row: pd.Series, suspect: bool, *, head: str = "", note: str = "") -> None:
    """Mark (or unmark) the face of one bundle row as a label suspect."""
    mark_suspects(bundle_dir, row.to_frame().T, suspect, head=head, note=note)


def suspect_index(frame: pd.DataFrame, suspects: pd.DataFrame) -> pd.Index:
    """The index labels of `frame`'s rows that are marked."""
    if frame.empty or suspects.empty:
        return frame.index[:0]
    return frame.index[face_keys(frame).isin(face_keys(suspects)).to_numpy(dtype=bool)]


def with_and_without(frame: pd.DataFrame, marked: pd.Index, metrics: tuple[str, ...] = HEADLINE_METRICS,
                     rounds: int = 300) -> pd.DataFrame:
    """Each metric on all faces and without the marked ones, with 95 % intervals and the change."""
    both = {"all faces": overall_metrics(frame, list(metrics), rounds=rounds),
            "without suspects": overall_metrics(frame.drop(index=marked), list(metrics), rounds=rounds)}
    table = pd.concat(both, axis=1)
    table.columns = [f"{part} {column}" for part, column in table.columns]
    table["change"] = table["without suspects value"] - table["all faces value"]
    return table
