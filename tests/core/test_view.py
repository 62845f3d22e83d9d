from core.view import parse_view, view_params

OPTIONS = {"race": ["White", "Black"], "skin": ["darker", "lighter"]}


def test_a_view_goes_into_the_url_and_back():
    params = view_params("fairface-sample", {"race": ["Black", "White"], "skin": [], "gender": ["Female"]})
    assert params == {"bundle": ["fairface-sample"], "filter.gender": ["Female"], "filter.race": ["Black", "White"]}
    view = parse_view(params, ["fairface-sample"], OPTIONS | {"gender": ["Male", "Female"]})
    assert (view.bundle, view.filters, view.problems) == ("fairface-sample", {"gender": ["Female"], "race": ["Black", "White"]}, [])


def test_what_is_not_here_is_reported_and_the_rest_applied():
    view = parse_view({"bundle": ["gone"], "filter.race": ["Black", "Green"], "filter.hair": ["red"], "utm": ["x"]},
                      ["a", "b"], OPTIONS)
    assert view.bundle is None and view.filters == {"race": ["Black"]}
    assert view.problems == ["no bundle named 'gone' (there are: a, b)", "race has no value 'Green'", "no filter column 'hair'"]


def test_a_saved_cohort_travels_in_the_url():
    params = view_params("london-set", {}, "confident misses")
    assert params == {"bundle": ["london-set"], "cohort": ["confident misses"]}
    assert parse_view(params, ["london-set"], OPTIONS, ["confident misses"]).cohort == "confident misses"
    view = parse_view(params, ["london-set"], OPTIONS, [])
    assert view.cohort is None and view.problems == ["no saved cohort named 'confident misses'"]
