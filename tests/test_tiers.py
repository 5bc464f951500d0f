"""The unit tier's guard holds a unit test's fixtures of every scope, not only the test body.

Each case runs a small suite in a fresh in-process pytest with the ``tiers`` plugin, so the
guard is exercised exactly as it is on the real suite. The fixtures connect to a closed port
on 127.0.0.1: the guard refuses before anything leaves the process.
"""

from __future__ import annotations

import pytest

MESSAGE = "unit tests stay in their process. Mark it `@pytest.mark.integration`"

REACHING_FIXTURE = """
import socket

import pytest


@pytest.fixture(scope="{scope}")
def upstream():
    with socket.socket() as sock:
        sock.connect_ex(("127.0.0.1", 9))
    yield "reached"


class TestLeaningOnUpstream:
    {mark}
    def test_leans_on_upstream(self, upstream):
        assert upstream == "reached"
"""

REACHING_BODY = """
import socket


def test_reaches_out():
    with socket.socket() as sock:
        sock.connect_ex(("127.0.0.1", 9))
"""


def _run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    """Run ``source`` as the only test module of a suite that uses the ``tiers`` plugin."""
    pytester.makeconftest('pytest_plugins = ["tiers"]\n')
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_reach=source)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider")


@pytest.mark.parametrize("scope", ["session", "module", "class", "function"])
def test_a_unit_test_whose_fixture_opens_a_connection_fails_naming_the_fixture(
    pytester: pytest.Pytester, scope: str
) -> None:
    result = _run(pytester, REACHING_FIXTURE.format(scope=scope, mark=""))

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*NotAUnitTest: the fixture 'upstream' ({scope} scope) of this unit test "
            "opened a network connection to ('127.0.0.1', 9); " + MESSAGE + "*"
        ]
    )


# The inner suite's fixture really connects here, so this test is no unit test either.
@pytest.mark.integration
def test_an_integration_test_may_use_a_module_fixture_that_connects(
    pytester: pytest.Pytester,
) -> None:
    result = _run(
        pytester, REACHING_FIXTURE.format(scope="module", mark="@pytest.mark.integration")
    )

    result.assert_outcomes(passed=1)


def test_a_unit_test_that_opens_a_connection_itself_fails_naming_the_test(
    pytester: pytest.Pytester,
) -> None:
    result = _run(pytester, REACHING_BODY)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*NotAUnitTest: this unit test opened a network connection to ('127.0.0.1', 9); *"]
    )
