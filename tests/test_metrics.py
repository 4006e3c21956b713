import pytest

from labhelpers.metrics import UNPARSEABLE, classification_scores, parse_label

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
