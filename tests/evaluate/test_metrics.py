import pytest

from labhelpers.evaluate.metrics import UNPARSEABLE, classification_scores, find_label, parse_label

TONES = ("joy", "sad", "fear", "surprise")


@pytest.mark.parametrize("answer, label", [
    ("joy", "joy"), (" Joy.", "joy"), ("SAD", "sad"), ("fear because", "fear"),
    ("surprise!", "surprise"), ("", UNPARSEABLE), ("the joy", UNPARSEABLE), ("joyous", UNPARSEABLE),
])
def test_parse_label(answer, label):
    assert parse_label(answer, TONES) == label


def test_scores_count_unparseable_as_wrong():
    y = ["joy", "sad", "fear", "surprise"]
    p = ["joy", "sad", UNPARSEABLE, "joy"]
    s = classification_scores(y, p, TONES)
    assert s["accuracy"] == 0.5
    assert s["unparseable"] == 0.25
    assert s["f1_joy"] == pytest.approx(2 / 3)
    assert s["f1_fear"] == 0.0
    assert s["macro_f1"] == pytest.approx((2 / 3 + 1 + 0 + 0) / 4)


def test_scores_reject_mismatched_lists():
    with pytest.raises(ValueError, match="equal"):
        classification_scores(["joy"], [], TONES)


def test_all_one_class_and_a_label_never_predicted():
    y = ["joy", "joy", "joy", "joy"]
    s = classification_scores(y, ["joy", "joy", "sad", "joy"], TONES)
    assert s["accuracy"] == 0.75
    assert s["f1_joy"] == pytest.approx(2 * 0.75 / 1.75)  # precision 1, recall 3/4
    assert s["f1_sad"] == 0.0 and s["f1_fear"] == 0.0  # never true, and fear never predicted: 0, no warning
    assert s["macro_f1"] == pytest.approx(s["f1_joy"] / 4)


def test_confusion_table_rows_true_columns_predicted():
    from labhelpers.evaluate.metrics import confusion_table

    t = confusion_table(["joy", "sad", "sad", "fear"], ["joy", "joy", UNPARSEABLE, "fear"], TONES)
    assert list(t.columns) == ["joy", "sad", "fear", "surprise", UNPARSEABLE]
    assert t.loc["sad", "joy"] == 1 and t.loc["sad", UNPARSEABLE] == 1 and t.loc["joy", "joy"] == 1
    assert int(t.values.sum()) == 4
    assert UNPARSEABLE not in confusion_table(["joy"], ["sad"], TONES).columns
    with pytest.raises(ValueError, match="equal"):
        confusion_table([], [], TONES)


@pytest.mark.parametrize("answer, label", [
    ("The tone of this sentence is fear.", "fear"),
    ("Joy, mostly; a little sad", "joy"),
    ("The sentence expresses a mix of emotions", UNPARSEABLE),
    ("joyful and fearless", UNPARSEABLE),   # whole words only: "joyful" is not the label "joy"
    ("", UNPARSEABLE),
])
def test_find_label_reads_the_first_label_anywhere(answer, label):
    assert find_label(answer, TONES) == label
