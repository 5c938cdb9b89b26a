"""sentinel:// URLs: every Sentinel, the database number and the master's password."""

import pytest

from rewards import redis_client


def test_a_sentinel_url_names_every_sentinel_its_database_and_the_masters_password():
    url = "sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/4"
    assert redis_client.sentinel_addresses(url) == (
        [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)], 4, "s3cret")
    assert redis_client.is_sentinel(url) and not redis_client.is_sentinel("redis://10.0.0.1:6379/4")


def test_a_part_that_is_not_a_sentinel_is_refused_by_name():
    with pytest.raises(ValueError, match="not a sentinel://host:port URL: 'redis://10.0.0.2:6379'"):
        redis_client.sentinel_addresses("sentinel://10.0.0.1:26379;redis://10.0.0.2:6379")
