"""The sustained-negativity rule on synthetic series: one bad day does not flag, a sustained run does, and the
thresholds are exact."""

from datetime import datetime, timedelta

from db.rules import AlertRule, evaluate, flagged_windows

T0 = datetime(2026, 3, 2, 9)


def series(labels: str, step: timedelta = timedelta(days=1)) -> list[tuple[datetime, str]]:
    """'+' positive, '-' negative, one message per `step`."""
    return [(T0 + i * step, "negative" if c == "-" else "positive") for i, c in enumerate(labels)]


def test_a_single_bad_day_does_not_flag():
    bad_day = series("+++++++" + "---", step=timedelta(hours=8))  # three negatives on one day, after a good week
    assert evaluate(bad_day) is None


def test_a_sustained_run_flags():
    finding = evaluate(series("+++-+----"))
    assert finding is not None and finding.negatives >= 4


def test_four_of_the_last_five_exactly():
    assert evaluate(series("+-+--" + "+")) is None  # 3 of the last 5 (and 50% of 6 in 7 days): no
    found = evaluate(series("++++" + "+----"))  # exactly 4 of the last 5
    assert found is not None and (found.negatives, found.total) == (4, 5)
    assert "4 of the last 5" in found.rule


def test_share_rule_exactly_at_sixty_percent_of_five_within_seven_days():
    # Spread so that the "last 5" rule cannot fire (3 of the last 5), but 3 of 5 within 7 days = 60% does.
    exactly = series("--+-+", step=timedelta(days=1))
    found = evaluate(exactly)
    assert found is not None and (found.negatives, found.total) == (3, 5) and "60%" in found.rule
    assert evaluate(series("--++-", step=timedelta(days=1))) is not None  # 3 of 5, still 60%
    assert evaluate(series("-+++-", step=timedelta(days=1))) is None  # 2 of 5 = 40%


def test_share_rule_needs_the_minimum_count_and_the_window():
    assert evaluate(series("-+--", step=timedelta(days=1))) is None  # 75% but only 4 messages
    spread = series("--+-+", step=timedelta(days=3))  # same labels over 12 days: only 2 in the last 7 days
    assert evaluate(spread) is None


def test_rule_parameters_are_respected():
    strict = AlertRule(last_n=3, last_k=3, days=7, share=1.0, min_messages=10)
    assert evaluate(series("+++--"), strict) is None
    assert evaluate(series("++---"), strict) is not None


def test_flagged_windows_cover_each_episode_once():
    labels = "+" * 10 + "-----" + "+" * 10 + "----"
    windows = flagged_windows(series(labels))
    assert len(windows) == 2
    assert windows[0][0] <= T0 + timedelta(days=11) and windows[0][1] >= T0 + timedelta(days=14)
    assert windows[1][1] == T0 + timedelta(days=len(labels) - 1)
