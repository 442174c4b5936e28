"""then(): a chained future completes whenever its source does, and cleans up every time."""

from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

import pytest

from strax_decl.engine.futures import then


def chained(fn=lambda v: v * 2):
    source: Future = Future()
    cleaned = []
    return source, then(source, fn, cleanup=lambda: cleaned.append(True)), cleaned


def test_value_error_and_cancellation_are_forwarded():
    source, out, cleaned = chained()
    source.set_result(21)
    assert out.result(timeout=1) == 42 and cleaned == [True]

    source, out, cleaned = chained()
    source.set_exception(KeyError("peaks"))
    with pytest.raises(KeyError, match="peaks"):
        out.result(timeout=1)
    assert cleaned == [True]

    source, out, cleaned = chained(lambda v: v["missing"])
    source.set_result({})
    with pytest.raises(KeyError, match="missing"):
        out.result(timeout=1)

    source, out, cleaned = chained()
    source.cancel()
    with pytest.raises(CancelledError):
        out.result(timeout=1)
    assert cleaned == [True]


def test_a_consumer_that_gave_up_gets_no_call_and_no_error(caplog):
    called = []
    source, out, cleaned = chained(called.append)
    assert out.cancel()
    source.set_result(1)  # would raise InvalidStateError in the callback without the guard
    assert called == [] and cleaned == [True]
    assert "exception calling callback" not in caplog.text


def test_works_across_threads():
    with ThreadPoolExecutor(2) as pool:
        outs = [then(pool.submit(pow, 2, i), str) for i in range(20)]
        assert [o.result(timeout=5) for o in outs] == [str(2**i) for i in range(20)]
