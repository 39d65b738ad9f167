"""Annotation loading: the happy path, every DataError (naming file, video and key), segment policies, THUMOS14."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from cltdr.data.annotations import AnnotationSet, load_annotations, read_class_names
from cltdr.errors import DataError

THUMOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14.json"


def video(subset="Validation", duration=20.0, fps=30.0, anns=None):
    entry = {"subset": subset, "duration": duration, "fps": fps, "annotations": anns if anns is not None else []}
    return entry


def ann(label, start, end, label_id=None):
    a = {"label": label, "segment": [start, end]}
    if label_id is not None:
        a["label_id"] = label_id
    return a


def write(tmp_path, database, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"database": database}))
    return path


def good_db():
    return {
        "v1": video(anns=[ann("Jump", 1.0, 2.5, 1), ann("Run", 3.0, 4.0, 0)]),
        "v2": video(subset="Test", duration=10.0, fps=25.0, anns=[ann("Run", 0.0, 10.0, 0)]),
        "v3": video(anns=[]),
    }


def raises(path, *fragments, **kwargs):
    kwargs.setdefault("subsets", ["validation"])
    with pytest.raises(DataError) as info:
        load_annotations(path, **kwargs)
    msg = str(info.value)
    for fragment in (str(path), *fragments):
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def test_load_good_file(tmp_path):
    path = write(tmp_path, good_db())
    result = load_annotations(path, subsets=["VALIDATION"])
    assert isinstance(result, AnnotationSet)
    assert result.class_names == ["Run", "Jump"]  # label_id order
    assert [v.video_id for v in result.videos] == ["v1", "v3"]
    v1 = result.videos[0]
    assert v1.subset == "Validation" and v1.duration == 20.0 and v1.fps == 30.0
    assert v1.segments.dtype == np.float64 and v1.segments.shape == (2, 2)
    np.testing.assert_array_equal(v1.segments, [[1.0, 2.5], [3.0, 4.0]])
    assert v1.labels.dtype == np.int64 and v1.labels.tolist() == [1, 0]
    assert result.videos[1].segments.shape == (0, 2) and result.videos[1].labels.shape == (0,)
    with pytest.raises(ValueError):
        v1.segments[0, 0] = 5.0  # read-only
    both = load_annotations(path, subsets=["validation", "test"])
    assert len(both.videos) == 3


def test_class_names_given_and_alphabetical(tmp_path):
    path = write(tmp_path, good_db())
    result = load_annotations(path, subsets=["test"], class_names=["Jump", "Run", "Swim"])
    assert result.videos[0].labels.tolist() == [1]
    db = {"a": video(anns=[ann("Zeta", 0, 1), ann("Alpha", 1, 2)]), "b": video("Test", anns=[ann("Mid", 0, 1)])}
    path2 = write(tmp_path, db, "noid.json")
    assert read_class_names(path2) == ["Alpha", "Mid", "Zeta"]  # whole file, all subsets
    assert read_class_names(write(tmp_path, good_db(), "ids.json")) == ["Run", "Jump"]


def test_default_fps(tmp_path):
    db = good_db()
    del db["v1"]["fps"]
    path = write(tmp_path, db)
    raises(path, "'v1'", "fps", "default_fps")
    assert load_annotations(path, subsets=["validation"], default_fps=24.0).videos[0].fps == 24.0


def test_missing_file_and_bad_json(tmp_path):
    raises(tmp_path / "nope.json", "not found")
    path = tmp_path / "bad.json"
    path.write_text('{"database": {\n  "v1": {,}\n}}')
    raises(path, "not valid JSON", "line 2", "column")


@pytest.mark.parametrize(
    "content, fragment",
    [
        ({"videos": {}}, '"database"'),
        ([1, 2], '"database"'),
        ({"database": []}, '"database"'),
        ({"database": {}}, "empty"),
    ],
)
def test_database_shape(tmp_path, content, fragment):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(content))
    raises(path, fragment)


def test_no_video_in_subsets_lists_existing(tmp_path):
    path = write(tmp_path, good_db())
    raises(path, "training", "'Validation' (2 videos)", "'Test' (1 video)", subsets=["training"])


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (lambda v: v.pop("duration"), ['"duration"']),
        (lambda v: v.pop("annotations"), ['"annotations"']),
        (lambda v: v.update(subset=3), ['"subset"']),
        (lambda v: v.update(annotations={"a": 1}), ['"annotations" must be a list']),
        (lambda v: v.update(duration="20"), ["duration", "'20'"]),
        (lambda v: v.update(duration=0), ["duration", "positive"]),
        (lambda v: v.update(duration=-3.0), ["duration", "-3.0"]),
        (lambda v: v.update(fps=0), ["fps", "positive"]),
        (lambda v: v.update(fps="30"), ["fps", "'30'"]),
        (lambda v: v["annotations"].append("x"), ["annotation 2", "expected an object"]),
        (lambda v: v["annotations"].append({"segment": [1, 2]}), ["annotation 2", '"label"']),
        (lambda v: v["annotations"].append({"label": "Run"}), ["annotation 2", '"segment"', "None"]),
        (lambda v: v["annotations"].append({"label": "Run", "segment": [1]}), ["annotation 2", '"segment"']),
        (lambda v: v["annotations"].append({"label": "Run", "segment": [1, "2"]}), ["annotation 2", '"segment"']),
        (lambda v: v["annotations"].append(ann("Run", 5.0, 5.0, 0)), ["annotation 2", "end <= start", "[5.0, 5.0]"]),
        (lambda v: v["annotations"].append(ann("Run", 6.0, 5.0, 0)), ["annotation 2", "end <= start"]),
        (lambda v: v["annotations"].append(ann("Run", 1.0, 2.0, "x")), ["annotation 2", "label_id", "'x'"]),
    ],
)
def test_bad_video_entry(tmp_path, mutate, fragments):
    db = good_db()
    mutate(db["v1"])
    raises(write(tmp_path, db), "'v1'", *fragments)


def test_non_finite_segment(tmp_path):
    path = tmp_path / "ann.json"
    db = good_db()
    db["v1"]["annotations"].append(ann("Run", 1.0, float("inf"), 0))
    path.write_text(json.dumps({"database": db}))  # json writes Infinity, which json.load accepts
    raises(path, "'v1'", "finite")


def test_unknown_label_lists_known(tmp_path):
    path = write(tmp_path, good_db())
    raises(path, "'v1'", "'Jump'", "known", "['Run', 'Swim']", class_names=["Run", "Swim"])


def test_inconsistent_label_ids(tmp_path):
    db = good_db()
    db["v2"]["annotations"].append(ann("Jump", 1.0, 2.0, 7))
    raises(write(tmp_path, db), "'Jump'", "label_id 1", "'v1'", "7", "'v2'")
    db = good_db()
    db["v2"]["annotations"].append(ann("Swim", 1.0, 2.0, 0))  # id 0 is Run
    raises(write(tmp_path, db, "b.json"), "label_id 0", "'Run'", "'Swim'", "'v2'")
    db = good_db()
    db["v2"]["annotations"].append(ann("Swim", 1.0, 2.0))  # no id while the others have one
    raises(write(tmp_path, db, "c.json"), "'Swim'", "label_id", "'v2'")
    with pytest.raises(DataError, match="label_id 1"):
        read_class_names(write(tmp_path, {**good_db(), "v4": video("Test", anns=[ann("Jump", 0, 1, 2)])}, "d.json"))


def outside_db():
    return {
        "v1": video(duration=10.0, anns=[ann("Run", -0.5, 2.0), ann("Run", 3.0, 4.0), ann("Run", 9.0, 11.0)]),
        "v2": video(duration=10.0, anns=[ann("Run", 10.5, 12.0), ann("Run", 1.0, 10.0005)]),
        "v3": video(duration=10.0, anns=[ann("Run", 0.0, 1.0)]),
    }


def test_segment_policy_error_names_video_and_segment(tmp_path):
    path = write(tmp_path, outside_db())
    raises(path, "3 segments in 2 videos", "'v1'", "[-0.5, 2.0]", "duration 10.0", "segment_policy")


def test_segment_policy_clip(tmp_path):
    path = write(tmp_path, outside_db())
    with pytest.warns(UserWarning, match="3 segments in 2 videos") as record:
        result = load_annotations(path, subsets=["validation"], segment_policy="clip")
    assert len(record) == 1 and "clipped" in str(record[0].message)
    v1, v2, v3 = result.videos
    np.testing.assert_array_equal(v1.segments, [[0.0, 2.0], [3.0, 4.0], [9.0, 10.0]])
    np.testing.assert_array_equal(v2.segments, [[1.0, 10.0]])  # [10.5, 12] left empty; 10.0005 within tolerance
    assert v1.labels.shape == (3,) and v2.labels.shape == (1,) and v3.segments.shape == (1, 2)


def test_segment_policy_drop(tmp_path):
    path = write(tmp_path, outside_db())
    with pytest.warns(UserWarning, match="3 segments in 2 videos.*dropped"):
        result = load_annotations(path, subsets=["validation"], segment_policy="drop")
    np.testing.assert_array_equal(result.videos[0].segments, [[3.0, 4.0]])
    np.testing.assert_array_equal(result.videos[1].segments, [[1.0, 10.0]])  # within tolerance: clipped, kept
    with pytest.raises(ValueError, match="segment_policy"):
        load_annotations(path, subsets=["validation"], segment_policy="ignore")


def test_no_warning_when_all_inside(tmp_path):
    path = write(tmp_path, good_db())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_annotations(path, subsets=["validation"], segment_policy="drop")


@pytest.mark.skipif(not THUMOS.is_file(), reason="shared THUMOS14 annotation file not present")
def test_thumos14_file():
    assert len(read_class_names(THUMOS)) == 20
    with pytest.raises(DataError, match="video_test_0000270|outside"):
        load_annotations(THUMOS, subsets=["test"])
    with pytest.warns(UserWarning, match="30 segments"):
        test = load_annotations(THUMOS, subsets=["test", "validation"], segment_policy="drop")
    assert len(test.class_names) == 20
    subsets = [v.subset for v in test.videos]
    assert subsets.count("Validation") == 200 and subsets.count("Test") == 212
    for v in test.videos:
        assert np.all(v.segments[:, 0] >= 0) and np.all(v.segments[:, 1] <= v.duration)
        assert np.all(v.segments[:, 1] > v.segments[:, 0])
        assert np.all((v.labels >= 0) & (v.labels < 20))
