"""The task catalogue: the shipped file holds the product's numbers; a bad entry is named precisely."""

import pytest

from rewards.catalog import CatalogError, load, parse

SHIPPED = load()


@pytest.mark.parametrize(
    ("task_id", "task_type", "reward_xp", "requirement"),
    [
        ("telegram_bot", "social", 100, 0),
        ("banking_app", "social", 150, 0),
        ("community_chat", "social", 100, 0),
        ("ambassador_hub", "social", 200, 0),
        ("invite_3_friends", "referral", 500, 3),
        ("daily_checkin_5", "action", 250, 5),
        ("invite_10_friends", "referral", 1000, 10),
        ("invite_1_friend", "referral", 250, 1),
        ("invite_500_friends", "referral", 10_000, 500),
    ],
)
def test_the_shipped_catalogue_holds_the_reference_tasks_and_the_ends_of_the_referral_ladder(
        task_id, task_type, reward_xp, requirement):
    task = SHIPPED.get(task_id)
    assert (task.type, task.reward_xp, task.requirement) == (task_type, reward_xp, requirement)


def test_the_catalogue_version_is_a_hash_of_the_file_so_any_edit_changes_it():
    text = '[tasks.a]\ntype = "social"\nreward_xp = 1\n'
    assert parse(text).version == parse(text).version
    assert parse(text).version.startswith("catalog-")
    assert parse(text.replace("= 1", "= 2")).version != parse(text).version
    assert SHIPPED.version.startswith("catalog-") and len(SHIPPED.version) <= 64


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ('type = "quiz"\nreward_xp = 10', "task 'broken': field 'type' must be one of social, referral, action"),
        ('reward_xp = 10', "task 'broken': field 'type' must be one of"),
        ('type = "social"\nreward_xp = 0', "task 'broken': field 'reward_xp' must be a whole number"),
        ('type = "social"\nreward_xp = -5', "task 'broken': field 'reward_xp' must be a whole number"),
        ('type = "social"\nreward_xp = 2.5', "task 'broken': field 'reward_xp' must be a whole number"),
        ('type = "social"\nreward_xp = true', "task 'broken': field 'reward_xp' must be a whole number"),
        ('type = "social"', "task 'broken': field 'reward_xp'"),
        ('type = "referral"\nreward_xp = 10', "task 'broken': field 'requirement' is required for referral tasks"),
        ('type = "action"\nreward_xp = 10', "task 'broken': field 'requirement' is required for action tasks"),
        ('type = "action"\nreward_xp = 10\nrequirement = 0', "task 'broken': field 'requirement' must be"),
        ('type = "social"\nreward_xp = 10\nrequirement = 3', "task 'broken': field 'requirement' is not allowed"),
        ('type = "social"\nreward_xp = 10\nreward = 3', "task 'broken': field 'reward' is not a catalogue field"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_entry_and_the_field(entry, fragment):
    text = f'[tasks.telegram_bot]\ntype = "social"\nreward_xp = 100\n\n[tasks.broken]\n{entry}\n'
    with pytest.raises(CatalogError) as raised:
        parse(text, "catalog.toml")
    assert fragment in str(raised.value)
    assert str(raised.value).startswith("catalog.toml: ")


def test_a_task_id_outside_the_job_contracts_pattern_is_refused():
    with pytest.raises(CatalogError, match="'Invite-3'"):
        parse('[tasks.Invite-3]\ntype = "social"\nreward_xp = 1\n')


def test_a_file_that_is_not_toml_or_holds_no_tasks_is_refused():
    with pytest.raises(CatalogError, match="not valid TOML"):
        parse("[tasks.a\n")
    with pytest.raises(CatalogError, match="no tasks"):
        parse("")


def test_a_missing_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(CatalogError, match="nowhere.toml: cannot read the catalogue"):
        load(missing)
