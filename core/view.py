"""A dashboard view (bundle and filter) as URL query parameters, so a view can be shared, bookmarked and reloaded.

    ?bundle=fairface-sample&filter.race=Black&filter.gender=Female&cohort=confident+misses

The page is the URL's path (`/subgroups`). Parameters that name no bundle, column or value are
reported, never applied silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["FILTER_PREFIX", "View", "parse_view", "view_params"]

FILTER_PREFIX = "filter."


@dataclass
class View:
    """What a URL asked for: a bundle, filters (column -> values), a cohort and what could not be applied."""

    bundle: str | None = None
    filters: dict[str, list[str]] = field(default_factory=dict)
    cohort: str | None = None
    problems: list[str] = field(default_factory=list)


def parse_view(params: Mapping[str, Sequence[str]], bundles: Sequence[str],
               options: Mapping[str, Sequence[str]], cohorts: Sequence[str] = ()) -> View:
    """Read query parameters (name -> all its values) against the bundles, filter options and cohorts there are."""
    view = View()
    for bundle in params.get("bundle", [])[-1:]:
        if bundle in bundles:
            view.bundle = bundle
        else:
            view.problems.append(f"no bundle named {bundle!r} (there are: {', '.join(bundles) or 'none'})")
    for cohort in params.get("cohort", [])[-1:]:
        if cohort in cohorts:
            view.cohort = cohort
        else:
            view.problems.append(f"no saved cohort named {cohort!r}")
    for name, values in params.items():
        if not name.startswith(FILTER_PREFIX):
            continue
        column = name.removeprefix(FILTER_PREFIX)
        if column not in options:
            view.problems.append(f"no filter column {column!r}")
            continue
        unknown = [value for value in values if value not in options[column]]
        if unknown:
            view.problems.append(f"{column} has no value {', '.join(map(repr, unknown))}")
        known = [value for value in values if value in options[column]]
        if known:
            view.filters[column] = known
    return view


def view_params(bundle: str | None, filters: Mapping[str, Sequence[str]], cohort: str | None = None
                ) -> dict[str, list[str]]:
    """The query parameters of a view (empty filters and no cohort left out)."""
    params = {"bundle": [bundle]} if bundle else {}
    params |= {f"{FILTER_PREFIX}{column}": list(values) for column, values in sorted(filters.items()) if values}
    return params | ({"cohort": [cohort]} if cohort else {})
