"""What `diff` of a queue, trigger or schedule reads the database with (providers/drift.py)."""

from __future__ import annotations

from pulumi.output import Unknown

from supaqueue.providers.drift import diff_url, refresh_advice

OLD = "postgresql://postgres:old-password@127.0.0.1:5432/postgres"
NEW = "postgresql://postgres:new-password@127.0.0.1:5432/postgres"


def test_the_new_url_wins_where_known() -> None:
    # the old URL may hold a password since rotated
    assert diff_url({"db_url": OLD}, {"db_url": NEW}) == NEW
    assert diff_url({"db_url": OLD}, {"db_url": Unknown()}) == OLD
    assert diff_url({"db_url": OLD}, {}) == OLD


def test_no_usable_url_reads_nothing() -> None:
    assert diff_url({}, {}) is None
    assert diff_url({"db_url": "not a url"}, {"db_url": Unknown()}) is None
    assert diff_url({"db_url": OLD}, {"db_url": ""}) is None


def test_the_advice_names_both_ways_out() -> None:
    text = refresh_advice("make it again", "it forgets it", "the next `up` then forgets it")
    assert text.startswith("nothing was changed. To make it again, run `pulumi refresh`")
    assert "`pulumi up --refresh`" in text and "remove it from the stack" in text
