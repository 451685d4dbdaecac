"""Label sets shipped with the engine, label files and inline lists."""
import pytest

from engine.model.labels import BUILTIN, LabelError, load_labels


@pytest.mark.parametrize("name,size", [("kinetics400", 400), ("k600-split1", 160), ("k600-split2", 160),
                                       ("k600-split3", 160), ("ucf101", 101), ("hmdb51", 51),
                                       ("activitynet", 200), ("charades", 157)])
def test_builtin_sets(name, size):
    labels = load_labels(name)
    assert len(labels) == size and len(set(labels.names)) == size
    assert name in BUILTIN


def test_names_verbatim():
    assert load_labels("kinetics400").names[:2] == ("abseiling", "air drumming")
    assert load_labels("charades").names[0] == "Holding some clothes"
    assert load_labels("ucf101").names[0] == "ApplyEyeMakeup"


def test_csv_file_inline_and_digest(tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text("id,name\n0,dog\n1,\"cat, sleeping\"\n")
    labels = load_labels(str(f))
    assert labels.names == ("dog", "cat, sleeping") and labels.name == "mine"
    inline = load_labels("dog, cat")
    assert inline.names == ("dog", "cat")
    assert load_labels("dog,cat").digest == inline.digest != load_labels("cat,dog").digest


def test_errors_name_the_source(tmp_path):
    with pytest.raises(LabelError, match="nope: no such label set"):
        load_labels("nope")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\nx,y,z\n")
    with pytest.raises(LabelError, match="bad.csv: line 2"):
        load_labels(str(bad))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(LabelError, match="empty"):
        load_labels(str(empty))
    with pytest.raises(LabelError, match="duplicate"):
        load_labels("a,b,a")


# ---- ids decide the order, not the rows ------------------------------------------------------------------
def _csv(tmp_path, text, name="l.csv"):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_csv_ids_decide_the_order(tmp_path):
    # the example: row order 2, 0, 1 — label 0 is "test pattern", not "bars"
    assert load_labels(_csv(tmp_path, "2,bars\n0,test pattern\n1,fractal\n")).names == (
        "test pattern", "fractal", "bars")
    assert load_labels(_csv(tmp_path, "id,name\n1,b\n0,a\n")).names == ("a", "b")
    assert load_labels(_csv(tmp_path, "name,id\nb,1\na,0\n")).names == ("a", "b")      # columns by header
    assert load_labels(_csv(tmp_path, "c001 walking\nc000 sitting\n", "c.txt")).names == ("sitting", "walking")
    assert load_labels(_csv(tmp_path, "name\nx\ny\n")).names == ("x", "y")             # no ids: row order


@pytest.mark.parametrize("text, match", [
    ("0,a\n0,b\n", "line 2: duplicate id 0 \\(also on line 1\\)"),
    ("0,a\n2,b\n", "ids must be 0..1.*id 1 is missing.*id 2 is out of range"),
    ("id,title\n0,a\n", "no name column"),
    ("id\n0\n1\n", "no name column"),
    ("0,a\nb\n", "line 2: expected 'id,name'"),
    ("id,name\n", "no classes"),
])
def test_bad_ids_and_headers_are_refused(tmp_path, text, match):
    with pytest.raises(LabelError, match=match):
        load_labels(_csv(tmp_path, text))
