"""A nudge's JSON body read into the command line's words, and a run's scales (pure)."""

from __future__ import annotations

import pytest

from caviar.serve.answers import nudge_request, scales


def test_a_nudge_body_becomes_the_words_caviar_nudge_reads():
    assert nudge_request({"set": {"learning_rate": "1e-3", "l2": 0}, "rollback": True}) == \
        (["learning_rate=1e-3", "l2=0"], True, False)
    assert nudge_request({"stop": True}) == ([], False, True)


@pytest.mark.parametrize("body, field", [
    ([1, 2], "body"), ({"sett": {}}, "sett"), ({"set": [1]}, "set"), ({"set": {"l2": None}}, "l2"),
    ({"set": {"l2": True}}, "l2"), ({"set": {"l2": {"a": 1}}}, "l2"), ({"stop": "yes"}, "stop"),
])
def test_a_malformed_nudge_body_is_one_line_naming_the_field(body, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        nudge_request(body)


def test_scales_come_from_the_jobs_space_as_data():
    job = {"space": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}, "beta1": {"one_minus_log_uniform": [0.9, 0.999]},
                     "batch_size": {"choice": [32, 64]}, "width": 64}}
    assert scales(job) == {"learning_rate": "log", "beta1": "one_minus_log", "batch_size": "category"}
    assert scales({}) == {} and scales({"space": "nonsense"}) == {}
