"""One glossary for the dashboard, its tooltips and the report: a plain name, a definition and the direction of good.

Metric terms live beside the metrics (`core.fairness.METRIC_TERMS`); `glossary()` adds the other words an
audit uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

__all__ = ["Term", "other_terms", "glossary", "plain_name", "explain_term"]


@dataclass(frozen=True)
class Term:
    """A word of the audit as people should read it."""

    name: str
    definition: str
    good: str = ""  # "higher", "lower", "closer to 0", or "" where it is not a score

    def help(self) -> str:
        """'definition (higher is better)': a tooltip."""
        return self.definition + (f" ({self.good} is better)" if self.good else "")


def other_terms() -> dict[str, Term]:
    """The words of an audit that are not metrics, with the thresholds the code uses."""
    from core.faces import LOW_SCORE, MIN_FACE_PX
    from core.fairness import SMALL_N

    return {
        "n": Term("n", "number of faces in the group"),
        "small_n": Term("small n", f"the group has fewer than {SMALL_N} faces: its estimate is unstable, shown in grey"),
        "ci": Term("95 % interval", "the range that holds the true value in 95 % of repeated audits: Wilson score for "
                                    "shares, bootstrap for age errors, photos of one person resampled together"),
        "diff": Term("difference", "the group's value minus the reference's (overall unless you pick a group)",
                     "closer to 0"),
        "ratio": Term("ratio", "the group's value divided by the reference's", "closer to 1"),
        "delta": Term("delta", "B − A: the compared bundle's value minus the reference bundle's, paired on the same "
                               "images"),
        "spread": Term("spread", f"largest minus smallest value over groups of at least {SMALL_N} faces", "lower"),
        "confidence": Term("confidence", "the probability the model gave its predicted class (for age: 1 / (1 + "
                                         "spread in years))"),
        "dup_group": Term("duplicate group", "images that are the same photo (resized, re-encoded or cropped); kept "
                                             "on one side of a split"),
        "multi_face": Term("several faces", "the photo holds more than one face; the audited one is outlined"),
        "face_flags": Term("face flags", f"why a face is less reliable: small (< {MIN_FACE_PX} px), low score "
                                         f"(< {LOW_SCORE}), upside down, sideways; 'none' when none applies"),
    }


@cache
def glossary() -> dict[str, Term]:
    """Every term: the metrics first, then the other words (built once; do not modify)."""
    from core.fairness import METRIC_TERMS

    return METRIC_TERMS | other_terms()


def plain_name(key: str) -> str:
    """The plain name of a metric or column, or the key itself when the glossary does not know it."""
    term = glossary().get(key)
    return term.name if term else key


def explain_term(key: str) -> str:
    """A tooltip for a metric or column: its definition and which way is good; '' when unknown."""
    term = glossary().get(key)
    return term.help() if term else ""
