"""--where is parsed as one DuckDB expression and run on the sandboxed connection (index/store/where.py)."""
from __future__ import annotations

import numpy as np
import pytest

from index.store import Store
from index.store.where import WhereError, filter_clips
from jobs.tag.records import ClipResult, ClipSpan, LabelRow, VideoResult, tables


def _clip(i, label):
    return ClipResult(ClipSpan(i, 10.0 * i, 10.0 * i + 10, [10.0 * i] * 2),
                      [LabelRow(label, 0.9, 0.8, 0.5, [0.5, 0.5], 10.0 * i)], [("phrase", 0.3)],
                      np.zeros((2, 4), np.float16), np.ones(4, np.float32))


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "store", create=True)
    a = [VideoResult("v1", "/a.mp4", clips=[_clip(0, "surfing"), _clip(1, "cooking")])]
    b = [VideoResult("v2", "/b.mp4", clips=[_clip(0, "surfing")])]
    s.write_batch(tables("m1", a), "m1", {"v1": "ok"})
    s.write_batch(tables("m2", b), "m2", {"v2": "ok"})
    return s


def test_conditions_filter_within_the_model(store):
    con = store.connect()
    assert sorted(filter_clips(con, "m1", "label = 'surfing' OR clip_index = 1")) == ["v1/0", "v1/1"]
    assert filter_clips(con, "m1", "list_contains(attributes, 'phrase') AND start_s >= 10") == ["v1/1"]
    assert filter_clips(con, "m2", "path LIKE '%b.mp4'") == ["v2/0"]


@pytest.mark.parametrize("condition, match", [
    ("1=1) UNION SELECT clip_id FROM clips WHERE (1=1", "one condition only"),
    ("1=1) OR (model_id <> ''", "one condition only"),
    ("true; SELECT 1", "one condition only"),
    ("clip_id IN (SELECT clip_id FROM clips)", "subqueries are not allowed"),
    ("EXISTS (SELECT * FROM read_text('/etc/passwd'))", "subqueries are not allowed"),
    ("(SELECT count(*) FROM glob('/root/*')) > 0", "subqueries are not allowed"),
    ("", "empty condition"),
    ("nosuch = 1", "cannot evaluate"),
])
def test_escapes_and_subqueries_are_refused(store, condition, match):
    with pytest.raises(WhereError, match=match):
        filter_clips(store.connect(), "m1", condition)


def test_model_filter_cannot_be_escaped(store):
    # pasted after "model_id = 'm1' AND (" this OR would still be inside the parentheses; an expression
    # object cannot change the model filter at all: m2's clip never comes back
    assert sorted(filter_clips(store.connect(), "m1", "true OR model_id = 'm2'")) == ["v1/0", "v1/1"]
