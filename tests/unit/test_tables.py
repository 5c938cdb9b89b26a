from rewards.cli.tables import render


def test_numbers_are_right_aligned_with_separators_and_text_left_aligned():
    text = render(["partner", "xp"], [["alice", 4500], ["bob", 900]], title="Leaderboard")
    assert text.splitlines() == [
        "Leaderboard",
        "partner     xp",
        "-------  -----",
        "alice    4,500",
        "bob        900",
    ]


def test_an_empty_table_says_so():
    assert render(["a"], []).splitlines()[-1] == "(none)"
