"""Tests of strax_decl.engine.mailbox with real threads.

Sleeps appear only as simulated work or inside bounded polling deadlines (``wait_until``); every
thread is joined with a timeout and asserted dead, and pytest-timeout turns any hang into a
failure.
"""

from __future__ import annotations

import gc
import pickle
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from strax_decl.engine.mailbox import (
    InvalidMessageNumber,
    LateSubscription,
    Mailbox,
    MailboxClosed,
    MailboxKilled,
    MailboxTimeout,
    Subscription,
    kill_all,
    original_exception,
)

pytestmark = pytest.mark.timeout(60)

JOIN_TIMEOUT = 5.0


class Boom(Exception):
    """The 'original' exception injected by the tests."""


# --------------------------------------------------------------------------- helpers
def start(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def start_in(group: Any, body: Callable[[], object]) -> threading.Thread:
    """Start ``body`` as a participant of ``group`` (a pipeline thread): it leaves the group
    however it ends."""

    def run() -> None:
        try:
            body()
        finally:
            group.thread_done()

    return start(run)


def join_all(*threads: threading.Thread, timeout: float = JOIN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still alive after {timeout} s: {alive}"


def wait_until(predicate: Callable[[], bool], timeout: float = JOIN_TIMEOUT) -> None:
    """Bounded poll for a state that has no event to wait on (e.g. 'a sender is blocked')."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.001)


class Reader(threading.Thread):
    """Iterates a subscription, recording what it got and how it ended."""

    def __init__(
        self,
        sub: Subscription,
        delay: float = 0.0,
        stop_after: int | None = None,
        check: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.sub = sub
        self.delay = delay
        self.stop_after = stop_after
        self.check = check
        self.got: list[Any] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for msg in self.sub:
                if self.check is not None:
                    self.check(msg)
                self.got.append(msg)
                if self.stop_after is not None and len(self.got) >= self.stop_after:
                    self.sub.close()
                    break
                if self.delay:
                    time.sleep(self.delay * random.random())  # simulated work
        except BaseException as exc:
            self.error = exc
            self.sub.mailbox.kill(exc)


def sender(mb: Mailbox, items: list[Any], numbers: list[int] | None = None) -> None:
    for i, item in enumerate(items):
        mb.send(item, None if numbers is None else numbers[i])


# --------------------------------------------------------------------------- ordering
def test_in_order_basic() -> None:
    mb = Mailbox("basic", max_messages=3)
    readers = [Reader(mb.subscribe()) for _ in range(2)]
    for r in readers:
        r.start()
    producer = start(mb.send_from, range(100))
    join_all(producer, *readers)
    for r in readers:
        assert r.error is None
        assert r.got == list(range(100))
    assert mb.closed and not mb.killed
    assert len(mb) == 0
    assert 1 <= mb.peak <= 3
    assert mb.active_subscribers == 0  # finished subscriptions unsubscribe themselves


def test_empty_stream() -> None:
    mb = Mailbox("empty")
    sub = mb.subscribe()
    mb.close()
    assert list(sub) == []
    assert list(sub) == []  # stays exhausted


def test_out_of_order_numbers_from_concurrent_senders() -> None:
    n = 2000
    mb = Mailbox("reorder", max_messages=4)
    readers = [Reader(mb.subscribe(), check=lambda _: _bound_ok(mb)) for _ in range(2)]
    for r in readers:
        r.start()
    numbers = list(range(n))
    random.Random(1).shuffle(numbers)
    # a random partition of the numbers over four sender threads; each sends its share in
    # increasing order, so messages arrive out of order (a thread that sends *its own* numbers
    # out of order must stay within the window, see the next test)
    shares = [sorted(numbers[i::4]) for i in range(4)]
    senders = [start(sender, mb, [f"msg{k}" for k in share], share) for share in shares]
    join_all(*senders)
    mb.close()
    join_all(*readers)
    for r in readers:
        assert r.error is None
        assert r.got == [f"msg{k}" for k in range(n)]
    assert mb.peak <= 4


def _bound_ok(mb: Mailbox) -> None:
    assert len(mb) <= mb.max_messages


def test_out_of_order_single_sender_within_window() -> None:
    mb = Mailbox("swap", max_messages=2)
    reader = Reader(mb.subscribe())
    reader.start()
    # pairs swapped: 1, 0, 3, 2, ... always within lowest-unsent + max_messages
    for i in range(0, 500, 2):
        mb.send(i + 1, i + 1)
        mb.send(i, i)
    mb.close()
    join_all(reader)
    assert reader.got == list(range(500))


def test_futures_are_delivered_in_order() -> None:
    n = 300
    mb = Mailbox("futures", max_messages=4)
    in_flight = 0
    peak_in_flight = 0
    lock = threading.Lock()

    def work(i: int, delay: float) -> int:
        nonlocal in_flight, peak_in_flight
        with lock:
            in_flight += 1
            peak_in_flight = max(peak_in_flight, in_flight)
        time.sleep(delay)  # simulated work with random duration
        with lock:
            in_flight -= 1
        return i * 10

    rng = random.Random(2)
    readers = [Reader(mb.subscribe(), check=lambda _: _bound_ok(mb)) for _ in range(3)]
    for r in readers:
        r.start()
    with ThreadPoolExecutor(8) as pool:
        mb.send_from(pool.submit(work, i, rng.random() * 0.002) for i in range(n))
        join_all(*readers)
    for r in readers:
        assert r.error is None
        assert r.got == [i * 10 for i in range(n)]
    assert mb.peak <= 4
    # backpressure counts futures not delivered yet; + 1: send_from's generator submits the
    # next future before send() blocks on it
    assert peak_in_flight <= 4 + 1


def test_futures_with_out_of_order_numbers() -> None:
    n = 400
    mb = Mailbox("futures-reorder", max_messages=3)
    reader = Reader(mb.subscribe())
    reader.start()
    numbers = list(range(n))
    random.Random(3).shuffle(numbers)

    def slow_identity(i: int) -> int:
        time.sleep(random.random() * 0.0005)
        return i

    with ThreadPoolExecutor(4) as pool:

        def send_share(share: list[int]) -> None:
            for k in share:
                mb.send(pool.submit(slow_identity, k), k)

        senders = [start(send_share, sorted(numbers[i::3])) for i in range(3)]
        join_all(*senders)
        mb.close()
        join_all(reader)
    assert reader.error is None
    assert reader.got == list(range(n))


def test_many_subscribers_at_different_speeds() -> None:
    n = 300
    mb = Mailbox("speeds", max_messages=2)
    delays = [0.0, 0.0, 0.0002, 0.0005, 0.001]
    readers = [Reader(mb.subscribe(), delay=d, check=lambda _: _bound_ok(mb)) for d in delays]
    for r in readers:
        r.start()
    producer = start(mb.send_from, (np.full(3, i) for i in range(n)))
    join_all(producer, *readers, timeout=15)
    for r in readers:
        assert r.error is None
        assert [int(a[0]) for a in r.got] == list(range(n))
    assert mb.peak <= 2


# ------------------------------------------------------------------ bounded memory
@pytest.mark.parametrize("n_subscribers", [1, 3])
def test_bounded_memory_10000_chunks(n_subscribers: int) -> None:
    n = 10_000
    mb = Mailbox("bounded", max_messages=2)
    observed: list[int] = []

    def check(_: object) -> None:
        observed.append(len(mb))

    readers = [Reader(mb.subscribe(), check=check) for _ in range(n_subscribers)]
    for r in readers:
        r.start()
    producer = start(mb.send_from, (np.zeros(8) for _ in range(n)))
    join_all(producer, *readers, timeout=15)
    for r in readers:
        assert r.error is None
        assert len(r.got) == n
    assert max(observed) <= 2
    assert mb.peak <= 2
    assert len(mb) == 0


def test_messages_dropped_once_everyone_read_them() -> None:
    mb = Mailbox("drop", max_messages=4)
    a, b = mb.subscribe(), mb.subscribe()
    for i in range(3):
        mb.send(i)
    assert len(mb) == 3
    assert [next(a), next(a)] == [0, 1]
    assert len(mb) == 3  # b has not read anything yet
    assert next(b) == 0
    assert len(mb) == 2
    assert [next(b), next(b)] == [1, 2]
    assert len(mb) == 1  # a has not read message 2 yet
    assert next(a) == 2
    assert len(mb) == 0


def test_sender_blocks_until_someone_subscribes() -> None:
    mb = Mailbox("nosub", max_messages=2)
    producer = start(mb.send_from, range(10))
    wait_until(lambda: mb.senders_waiting == 1)
    assert len(mb) == 2  # held for the first subscriber, which gets everything
    assert list(mb.subscribe()) == list(range(10))
    join_all(producer)


# ---------------------------------------------------------------------------- kill
def test_kill_wakes_blocked_sender() -> None:
    mb = Mailbox("kill-sender", max_messages=1)
    sub = mb.subscribe()  # subscribed, never read: the sender blocks on message 1
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            sender(mb, [0, 1, 2])
        except BaseException as exc:
            errors.append(exc)

    producer = start(produce)
    wait_until(lambda: mb.senders_waiting == 1)
    boom = Boom("upstream failure")
    t0 = time.monotonic()
    mb.kill(boom)
    join_all(producer, timeout=2)
    assert time.monotonic() - t0 < 2
    assert len(errors) == 1 and isinstance(errors[0], MailboxKilled)
    assert errors[0].reason is boom
    assert "kill-sender" in str(errors[0]) and "upstream failure" in str(errors[0])
    with pytest.raises(MailboxKilled):
        next(sub)


def test_kill_wakes_blocked_reader_and_keeps_original_traceback() -> None:
    mb = Mailbox("kill-reader")
    readers = [Reader(mb.subscribe()) for _ in range(2)]
    for r in readers:
        r.start()
    mb.send("first")
    wait_until(lambda: all(r.got == ["first"] for r in readers) and mb.readers_waiting == 2)

    def fail() -> None:
        raise Boom("in a plugin")

    try:
        fail()
    except Boom as exc:
        boom = exc
    mb.kill(boom)
    join_all(*readers, timeout=2)
    for r in readers:
        assert r.got == ["first"]
        assert isinstance(r.error, MailboxKilled)
        assert r.error.reason is boom
        assert r.error.__cause__ is boom
        assert r.error.mailbox == "kill-reader"
    tb = boom.__traceback__
    assert tb is not None
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "fail" in frames  # the original traceback travels with the reason


def test_kill_wakes_reader_waiting_for_a_future() -> None:
    mb = Mailbox("kill-future")
    reader = Reader(mb.subscribe())
    never: Future[int] = Future()  # never completed
    mb.send(never)
    reader.start()
    wait_until(lambda: mb.readers_waiting == 1)  # waiting for the future's result
    mb.kill(Boom("stop"))
    join_all(reader, timeout=2)
    assert isinstance(reader.error, MailboxKilled)
    assert isinstance(reader.error.reason, Boom)


def test_kill_is_idempotent_first_reason_wins_and_unwraps() -> None:
    a, b = Mailbox("a"), Mailbox("b")
    first, second = Boom("first"), Boom("second")
    a.kill(first)
    a.kill(second)
    assert a.reason is first
    # propagating a MailboxKilled stores the original exception, not the wrapper
    b.kill(MailboxKilled(first, "a"))
    assert b.reason is first
    assert original_exception(MailboxKilled(first, "a")) is first
    assert original_exception(second) is second
    c, d = Mailbox("c"), Mailbox("d")
    kill_all([c, d], second)
    assert c.reason is second and d.reason is second
    with pytest.raises(MailboxKilled):
        c.send(1)
    c.close()  # closing a killed mailbox is a no-op
    with pytest.raises(TypeError):
        Mailbox("e").kill("not an exception")  # type: ignore[arg-type]


def test_subscribe_after_kill_raises_killed() -> None:
    mb = Mailbox("dead")
    mb.send(0)
    mb.kill(Boom("x"))
    sub = mb.subscribe()
    with pytest.raises(MailboxKilled) as info:
        next(sub)
    assert isinstance(info.value.reason, Boom)


def test_mailbox_killed_pickles() -> None:
    exc = pickle.loads(pickle.dumps(MailboxKilled(Boom("x"), "records")))
    assert isinstance(exc, MailboxKilled)
    assert isinstance(exc.reason, Boom) and exc.mailbox == "records"


# -------------------------------------------------------------------------- futures
def test_future_that_raises_delivers_original_exception() -> None:
    mb = Mailbox("failing-future", max_messages=4)
    boom = Boom("compute failed")

    def compute(i: int) -> int:
        if i == 5:
            raise boom
        return i

    readers = [Reader(mb.subscribe()) for _ in range(2)]
    sender_errors: list[BaseException] = []

    def produce(pool: ThreadPoolExecutor) -> None:
        try:
            mb.send_from(pool.submit(compute, i) for i in range(100))
        except BaseException as exc:
            sender_errors.append(exc)

    with ThreadPoolExecutor(2) as pool:
        for r in readers:
            r.start()
        producer = start(produce, pool)
        join_all(producer, *readers)
    errors = [r.error for r in readers]
    first = errors.index(boom)  # the first reader to see it gets the original exception
    assert readers[first].got == [0, 1, 2, 3, 4]
    other = readers[1 - first]  # killed as soon as the first reader saw the failure
    assert isinstance(other.error, MailboxKilled) and other.error.reason is boom
    assert other.got == [0, 1, 2, 3, 4][: len(other.got)]
    assert mb.reason is boom
    assert len(sender_errors) == 1
    assert isinstance(sender_errors[0], MailboxKilled) and sender_errors[0].reason is boom


def test_cancelled_future_kills_the_mailbox() -> None:
    mb = Mailbox("cancelled")
    sub = mb.subscribe()
    fut: Future[int] = Future()
    fut.cancel()
    mb.send(fut)
    with pytest.raises(CancelledError):
        next(sub)
    assert mb.killed


# ----------------------------------------------------------------------- early stop
def test_subscriber_breaking_early_does_not_block_others() -> None:
    n = 2000
    mb = Mailbox("early", max_messages=2)
    full = Reader(mb.subscribe(), delay=0.00002)
    quitter_got: list[int] = []

    def quitter(sub: Subscription) -> None:
        for msg in sub:  # the subscription is dropped after the break: garbage collected
            quitter_got.append(msg)
            if len(quitter_got) == 3:
                break

    q = start(quitter, mb.subscribe())
    full.start()
    producer = start(mb.send_from, range(n))
    join_all(producer, q, full)
    assert quitter_got == [0, 1, 2]
    assert full.error is None and full.got == list(range(n))


def test_early_stop_by_close_with_and_generator_close() -> None:
    mb = Mailbox("stops", max_messages=2)
    explicit = Reader(mb.subscribe(), stop_after=5)

    def gen_wrapper() -> Generator[int, None, None]:
        yield from mb.subscribe()

    def use_generator() -> None:
        gen = gen_wrapper()
        assert [next(gen) for _ in range(2)] == [0, 1]
        gen.close()  # closing the generator drops (unsubscribes) its subscription

    def use_with() -> None:
        with mb.subscribe() as sub:
            assert next(sub) == 0

    full = Reader(mb.subscribe())
    threads = [start(use_generator), start(use_with)]
    explicit.start()
    full.start()
    producer = start(mb.send_from, range(1000))
    join_all(producer, explicit, full, *threads)
    assert explicit.got == [0, 1, 2, 3, 4]
    assert full.got == list(range(1000))
    assert mb.active_subscribers == 0


def test_all_subscribers_gone_sender_never_blocks() -> None:
    mb = Mailbox("nobody", max_messages=1)
    sub = mb.subscribe()
    mb.send(0)
    assert next(sub) == 0
    sub.close()
    sub.close()  # idempotent
    producer = start(mb.send_from, range(1, 1000))
    join_all(producer)
    assert len(mb) == 0  # discarded: nobody reads them
    assert mb.closed and not mb.killed


def test_close_from_another_thread_wakes_the_reader() -> None:
    mb = Mailbox("xclose")
    sub = mb.subscribe()
    reader = Reader(sub)
    reader.start()
    wait_until(lambda: mb.readers_waiting == 1)
    sub.close()
    join_all(reader, timeout=2)
    assert reader.error is None and reader.got == []


def test_subscription_collected_while_lock_is_held() -> None:
    # A finalizer may run inside the mailbox's own critical section (cyclic GC); it must not
    # deadlock on the non-reentrant lock, and the unsubscription must still happen.
    mb = Mailbox("gc", max_messages=1)
    keep = mb.subscribe()
    holder: list[Any] = [mb.subscribe()]
    holder.append(holder)  # a reference cycle: only the cyclic collector frees it
    del holder
    with mb._lock:
        gc.collect()
    wait_until(lambda: mb.active_subscribers == 1)
    mb.send(0)
    producer = start(mb.send_from, range(1, 50))
    assert list(keep) == list(range(50))
    join_all(producer)


# --------------------------------------------------------------- late subscription
def test_late_subscriber_gets_everything_while_nothing_was_dropped() -> None:
    mb = Mailbox("late-ok", max_messages=4)
    early = mb.subscribe()
    for i in range(3):
        mb.send(i)
    late = mb.subscribe()  # messages were sent, but none dropped yet
    mb.close()
    assert list(early) == [0, 1, 2]
    assert list(late) == [0, 1, 2]


def test_late_subscription_after_drop_is_an_error() -> None:
    mb = Mailbox("late-bad")
    early = mb.subscribe()
    mb.send(0)
    mb.send(1)
    assert next(early) == 0
    with pytest.raises(LateSubscription, match="late-bad"):
        mb.subscribe()


# ---------------------------------------------------------------- close / numbers
def test_send_after_close() -> None:
    mb = Mailbox("closed")
    mb.subscribe()
    mb.send(0)
    mb.close()
    mb.close()  # idempotent
    with pytest.raises(MailboxClosed, match="closed"):
        mb.send(1)


def test_close_with_missing_numbers_kills() -> None:
    mb = Mailbox("gaps")
    sub = mb.subscribe()
    mb.send("a", 0)
    mb.send("c", 2)
    with pytest.raises(InvalidMessageNumber, match=r"missing.*\[1\]"):
        mb.close()
    assert mb.killed
    with pytest.raises(MailboxKilled):
        next(sub)


@pytest.mark.parametrize("bad", [-1, 1.0, "2", object(), True, 2.5])
def test_invalid_message_number_types(bad: Any) -> None:
    mb = Mailbox("numbers")
    with pytest.raises(InvalidMessageNumber):
        mb.send("x", bad)


def test_duplicate_and_already_delivered_numbers() -> None:
    mb = Mailbox("dups", max_messages=4)
    sub = mb.subscribe()
    mb.send("a", 0)
    mb.send("c", 2)
    with pytest.raises(InvalidMessageNumber, match="already sent"):
        mb.send("again", 2)  # duplicate of a held message
    mb.send("b", np.int64(1))  # numpy integers are fine
    assert [next(sub), next(sub)] == ["a", "b"]
    with pytest.raises(InvalidMessageNumber, match="delivered"):
        mb.send("late", 0)
    mb.send("d")  # automatic numbering continues after the highest number
    mb.close()
    assert list(sub) == ["c", "d"]


def test_constructor_validation_and_repr() -> None:
    with pytest.raises(ValueError):
        Mailbox("x", max_messages=0)
    with pytest.raises(ValueError):
        Mailbox("x", timeout=0)
    mb = Mailbox("records")
    assert mb  # an empty mailbox is truthy
    assert "records" in repr(mb)
    assert "records" in repr(mb.subscribe())


# --------------------------------------------------------------------------- timeouts
def test_reader_timeout_names_the_mailbox_and_kills_it() -> None:
    mb = Mailbox("stuck-reader", timeout=0.05)
    a, b = mb.subscribe(), mb.subscribe()
    t0 = time.monotonic()
    with pytest.raises(MailboxTimeout, match=r"stuck-reader.*message 0"):
        next(a)
    assert time.monotonic() - t0 < 2
    assert isinstance(mb.reason, MailboxTimeout)
    with pytest.raises(MailboxKilled):
        next(b)


def test_sender_timeout() -> None:
    mb = Mailbox("stuck-sender", max_messages=1, timeout=0.05)
    sub = mb.subscribe()  # kept alive (a dropped subscription would not hold anything back)
    mb.send(0)
    with pytest.raises(MailboxTimeout, match=r"stuck-sender.*send message 1"):
        mb.send(1)
    with pytest.raises(MailboxKilled):
        next(sub)


# ------------------------------------------------------------------------ send_from
def test_send_from_iterable_exception_kills_and_reraises() -> None:
    mb = Mailbox("source")
    reader = Reader(mb.subscribe())
    reader.start()
    boom = Boom("loader failed")

    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise boom

    with pytest.raises(Boom):
        mb.send_from(source())
    join_all(reader)
    assert reader.got == [1, 2][: len(reader.got)]  # the kill is immediate: maybe fewer
    assert isinstance(reader.error, MailboxKilled) and reader.error.reason is boom


def test_send_from_closes_generator_when_killed() -> None:
    mb = Mailbox("downstream-died", max_messages=1)
    sub = mb.subscribe()
    cleaned_up = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            cleaned_up.set()

    errors: list[BaseException] = []

    def produce() -> None:
        try:
            mb.send_from(source())
        except BaseException as exc:
            errors.append(exc)

    producer = start(produce)
    assert next(sub) == 0
    mb.kill(Boom("reader died"))
    join_all(producer)
    assert cleaned_up.is_set()
    assert isinstance(errors[0], MailboxKilled)


def test_kill_propagates_through_a_chain_of_mailboxes() -> None:
    # source -> a -> plugin -> b -> consumer: the plugin's input raises MailboxKilled, which
    # send_from passes on to b with the ORIGINAL exception as the reason
    a, b = Mailbox("a", max_messages=2), Mailbox("b", max_messages=2)
    a_sub, b_sub = a.subscribe(), b.subscribe()
    boom = Boom("source failed")

    def source() -> Iterator[int]:
        yield 1
        raise boom

    plugin_errors: list[BaseException] = []

    def plugin() -> None:
        try:
            b.send_from(x * 10 for x in a_sub)
        except BaseException as exc:
            plugin_errors.append(exc)
            kill_all([a, b], exc)

    def load() -> None:
        try:
            a.send_from(source())
        except Boom as exc:
            plugin_errors.append(exc)

    consumer = Reader(b_sub)
    consumer.start()
    threads = [start(plugin), start(load)]
    join_all(*threads, consumer)
    assert consumer.got == [10][: len(consumer.got)]
    assert isinstance(consumer.error, MailboxKilled)
    assert consumer.error.reason is boom and consumer.error.mailbox == "b"
    assert boom in plugin_errors  # send_from re-raises the source's exception
    killed = [e for e in plugin_errors if e is not boom]
    assert len(killed) == 1 and isinstance(killed[0], MailboxKilled) and killed[0].reason is boom
    assert a.reason is boom and b.reason is boom


# ---------------------------------------------------------------------------- stress
@pytest.mark.timeout(120)
def test_stress_random_kill_points_never_hang() -> None:
    rng = random.Random(12345)
    with ThreadPoolExecutor(2) as pool:
        for rep in range(200):
            _stress_once(rng, rep, pool)


def _stress_once(rng: random.Random, rep: int, pool: ThreadPoolExecutor) -> None:
    n = rng.randint(0, 60)
    mode = rng.choice(["none", "source", "reader", "external", "future", "quitter"])
    kill_at = rng.randint(0, max(n - 1, 0))
    use_futures = mode == "future" or rng.random() < 0.3
    mb = Mailbox(f"stress{rep}", max_messages=rng.randint(1, 4))
    boom = Boom(f"rep {rep} {mode}")
    killed = threading.Event()

    def compute(i: int) -> int:
        if mode == "future" and i == kill_at:
            raise boom
        return i

    def source() -> Iterator[Any]:
        for i in range(n):
            if mode == "source" and i == kill_at:
                raise boom
            if mode == "external" and i == kill_at:
                killed.wait(JOIN_TIMEOUT)  # the stream cannot complete before the kill
            yield pool.submit(compute, i) if use_futures else i
        if mode == "external":
            killed.wait(JOIN_TIMEOUT)

    readers = [Reader(mb.subscribe()) for _ in range(3)]
    if mode == "quitter":
        readers[1].stop_after = kill_at + 1
    if mode == "reader":
        readers[0].check = lambda msg: _maybe_raise(msg, kill_at, boom)
    producer_errors: list[BaseException] = []

    def produce() -> None:
        try:
            mb.send_from(source())
        except BaseException as exc:
            producer_errors.append(exc)

    for r in readers:
        r.start()
    producer = start(produce)
    if mode == "external":
        mb.kill(boom)  # at a random point relative to the producer and readers
        killed.set()
    join_all(producer, *readers)

    failed = (mode in ("source", "reader", "future") and n > 0) or mode == "external"
    for k, r in enumerate(readers):
        assert r.got == list(range(len(r.got)))  # always in order, nothing skipped
        if not failed:
            assert r.error is None
            expected = kill_at + 1 if (mode == "quitter" and k == 1 and n) else n
            assert len(r.got) == expected
        elif r.error is None:  # a healthy reader may finish before another one fails
            assert mode == "reader" and k > 0 and len(r.got) == n
        else:
            assert original_exception(r.error) is boom
    if failed:
        assert mb.reason is boom
        if producer_errors:
            assert original_exception(producer_errors[0]) is boom
    else:
        assert not producer_errors


def _maybe_raise(msg: int, at: int, exc: BaseException) -> None:
    if msg == at:
        raise exc


def _diamond(group):
    """X feeds A (which holds back until it has seen 5 more messages) and B (reads X and A in
    step). With bound 2 on X, this deadlocks on the bounds alone unless the group breaks it."""
    from strax_decl.engine.mailbox import Mailbox

    x = Mailbox("x", max_messages=2, timeout=None if group else 2.0, group=group)
    a = Mailbox("a", max_messages=2, timeout=None if group else 2.0, group=group)
    x_for_a, x_for_b, a_for_b = x.subscribe(), x.subscribe(), a.subscribe()
    got = []
    errors = []

    def hold_back(sub):
        seen = []
        for msg in sub:
            seen.append(msg)
            if len(seen) > 5:
                yield seen.pop(0)
        yield from seen

    def consumer():
        try:
            for from_x, from_a in zip(x_for_b, a_for_b, strict=True):
                got.append((from_x, from_a))
        except BaseException as e:
            errors.append(e)

    threads = [
        threading.Thread(target=lambda: x.send_from(range(50))),
        threading.Thread(target=lambda: a.send_from(hold_back(x_for_a))),
        threading.Thread(target=consumer),
    ]
    if group:
        group.add_threads(len(threads))

    def run(t):
        try:
            t()
        except BaseException as e:
            errors.append(e)
        finally:
            if group:
                group.thread_done()

    runners = [threading.Thread(target=run, args=(t.run,)) for t in threads]
    for t in runners:
        t.start()
    for t in runners:
        t.join(10)
    assert not any(t.is_alive() for t in runners)
    return got, errors, x


@pytest.mark.timeout(30)
def test_group_breaks_a_deadlock_caused_only_by_bounds():
    from strax_decl.engine.mailbox import MailboxGroup, MailboxTimeout

    got, errors, _ = _diamond(None)
    assert any(isinstance(e, MailboxTimeout) for e in errors), "without a group it deadlocks"

    group = MailboxGroup()
    got, errors, x = _diamond(group)
    assert errors == []
    assert got == [(i, i) for i in range(50)]
    assert group.overflows > 0
    assert x.peak <= 2 + 6  # the bound plus what the hold-back really needs


@pytest.mark.timeout(30)
def test_group_sender_that_completes_the_deadlock_gets_its_own_overflow():
    """The last participant to block is a sender on a full mailbox: it is the one that sees
    everybody waiting and grants the overflow, to its own mailbox. It must use it, not wait
    for a notification it sent before it was waiting (a lost wake-up: it then waits forever,
    and the group, seeing a waiter whose condition holds, never acts again)."""
    from strax_decl.engine.mailbox import MailboxGroup

    group = MailboxGroup()
    x = Mailbox("x", max_messages=1, group=group)
    y = Mailbox("y", max_messages=1, group=group)
    never_read = x.subscribe()  # holds x back: only an overflow lets its sender go on
    y_sub = y.subscribe()
    group.add_threads(2)
    got: list[Any] = []

    def send_x_then_y() -> None:  # blocks last, on x's bound
        for i in range(3):
            x.send(i)
        y.send_from(["done"])

    # the reader blocks first, on y, which is only sent to once x is sent
    threads = [start_in(group, lambda: got.extend(y_sub))]
    wait_until(lambda: y.readers_waiting == 1)
    threads.append(start_in(group, send_x_then_y))
    try:
        join_all(*threads)
    finally:
        kill_all([x, y], Boom("test over"))  # ends a hung thread either way
    assert got == ["done"]
    assert x.peak == 3 and group.overflows == 2  # one overflow per message over the bound
    assert never_read.position == 0


@pytest.mark.timeout(30)
def test_group_wakes_a_blocked_sender_once_half_the_window_is_free():
    """In a pipeline run a producer ahead of its reader sends two messages per wake-up (of a
    window of four), not one: every wake-up is a thread switch."""
    from strax_decl.engine.mailbox import MailboxGroup

    group = MailboxGroup()
    box = Mailbox("x", max_messages=4, group=group)
    sub = box.subscribe()
    group.add_threads(2)
    sent: list[int] = []

    def send() -> None:
        for i in range(6):
            box.send(i)
            sent.append(i)
        box.close()

    sender = start_in(group, send)
    wait_until(lambda: box.senders_waiting == 1)
    assert next(sub) == 0  # one free: not woken yet
    time.sleep(0.05)
    assert sent == [0, 1, 2, 3] and box.senders_waiting == 1
    assert next(sub) == 1  # two free: woken, and it fills both
    wait_until(lambda: sent == [0, 1, 2, 3, 4, 5])
    group.thread_done()  # the reader
    join_all(sender)
    assert list(sub) == [2, 3, 4, 5]


@pytest.mark.timeout(30)
def test_group_delivers_a_deferred_wake_up_before_everybody_waits():
    """The reader takes one message, which frees too little to wake the sender, then waits for
    another mailbox that only that sender fills: the deferred wake-up must be delivered when
    the reader begins to wait (every thread of the run would wait otherwise: a hang)."""
    from strax_decl.engine.mailbox import MailboxGroup

    group = MailboxGroup()
    x = Mailbox("x", max_messages=4, group=group, timeout=10)
    y = Mailbox("y", max_messages=4, group=group, timeout=10)
    x_sub, y_sub = x.subscribe(), y.subscribe()
    group.add_threads(2)

    def send() -> None:
        for i in range(5):
            x.send(i)
        y.send_from(["after x4"])
        x.close()

    sender = start_in(group, send)
    try:
        wait_until(lambda: x.senders_waiting == 1)
        assert next(x_sub) == 0
        assert list(y_sub) == ["after x4"]  # it waited on y: the sender was woken for x4
        assert list(x_sub) == [1, 2, 3, 4]
        assert group.overflows == 0  # woken, not granted an overflow
    finally:
        group.thread_done()
        kill_all([x, y], Boom("test over"))
        join_all(sender)


@pytest.mark.timeout(30)
def test_group_wakes_a_sender_at_once_when_a_reader_waits_for_more():
    """Two readers: the fast one waits for the next message, the slow one frees one place.
    The sender must go at once (one free place is not half the window, but a reader waiting
    must not wait for the slow one: that stalled runs and made spurious timeouts)."""
    from strax_decl.engine.mailbox import MailboxGroup

    group = MailboxGroup()
    box = Mailbox("x", max_messages=4, group=group)
    fast, slow = box.subscribe(), box.subscribe()
    group.add_threads(3)
    got: list[int] = []

    threads = [start_in(group, lambda: box.send_from(range(5)))]
    wait_until(lambda: box.senders_waiting == 1)
    threads.append(start_in(group, lambda: got.extend(fast)))
    wait_until(lambda: got == [0, 1, 2, 3] and box.readers_waiting == 1)
    assert next(slow) == 0  # one place free, and the fast reader waits: the sender goes
    wait_until(lambda: got == [0, 1, 2, 3, 4])
    group.thread_done()  # the slow reader
    join_all(*threads)
    assert list(slow) == [1, 2, 3, 4]


@pytest.mark.timeout(30)
def test_group_sender_times_out_only_if_its_readers_stop_moving():
    """A slow reader frees one place at a time, each within the timeout: the sender, woken
    only every second one, waits longer than the timeout, but its readers keep moving, so
    that is no hang."""
    from strax_decl.engine.mailbox import MailboxGroup

    group = MailboxGroup()
    box = Mailbox("x", max_messages=4, group=group, timeout=0.5)
    sub = box.subscribe()
    group.add_threads(2)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            box.send_from(range(8))
        except BaseException as e:
            errors.append(e)

    sender = start_in(group, send)
    got = []
    for message in sub:
        got.append(message)
        time.sleep(0.35)
    group.thread_done()
    join_all(sender)
    assert errors == [] and got == list(range(8))
