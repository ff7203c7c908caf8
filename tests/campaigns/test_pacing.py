import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from django.core.cache import caches
from django.db import connection, models
from django.test.utils import isolate_apps, override_settings

from campaigns.sending import pacing
from campaigns.sending.pacing import (
    CacheStore,
    CircuitBreaker,
    LocalStore,
    ModelStore,
    RateLimiter,
    RedisStore,
    Store,
    store_for,
)

T0 = 1_700_000_000.0
REDIS_URL = "redis://127.0.0.1:6379/0"


def approx(expected: float | list[float]) -> object:
    # A float near 1.7e9 s (a real Unix time) holds about 0.2 µs, so each booking of
    # 0.1 s rounds by a fraction of that, the same way every time: waits come out a
    # millionth short. Ten parts per million is still far below one slot.
    return pytest.approx(expected, rel=1e-5, abs=1e-5)


class FakeClock:
    """Stands in for pacing.now and pacing.sleep: sleeping moves the clock."""

    def __init__(self) -> None:
        self.value = T0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.value

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.value += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(pacing, "now", fake)
    monkeypatch.setattr(pacing, "sleep", fake.sleep)
    return fake


@pytest.fixture
def redis_store() -> Iterator[RedisStore]:
    """A RedisStore on the fake clock, its keys under a prefix of its own."""
    prefix = f"test:throttle:{uuid.uuid4().hex}:"
    store = RedisStore(REDIS_URL, prefix=prefix, server_time=False)
    try:
        store.client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is not running at {REDIS_URL}: {exc}")
    yield store
    keys = list(store.client.scan_iter(match=prefix + "*"))
    if keys:
        store.client.delete(*keys)


@pytest.fixture(params=["local", "redis", "cache"])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> Store:
    """Each store that the tests can run without a new table."""
    if request.param == "local":
        return LocalStore()
    if request.param == "cache":
        cache = caches["default"]
        cache.clear()
        return CacheStore(cache, prefix=f"test:{uuid.uuid4().hex}:")
    return request.getfixturevalue("redis_store")


def waits(limiter: RateLimiter, costs: list[float]) -> list[float]:
    return [limiter.reserve(cost) for cost in costs]


# --- Rate limiter: the schedule -------------------------------------------------------


def test_reservations_are_spaced_by_one_over_the_rate(store):
    limiter = RateLimiter("vonage", rate=10, store=store)
    assert waits(limiter, [1] * 20) == approx([n / 10 for n in range(20)])


def test_costs_are_weighted_by_segments(store):
    limiter = RateLimiter("vonage", rate=10, store=store)
    # A 3-segment message goes at once, then holds the next ones back by 3 slots.
    assert waits(limiter, [3, 1, 2, 1]) == approx([0, 0.3, 0.4, 0.6])


def test_burst_lets_that_many_units_go_at_once_after_an_idle_spell(store, clock):
    limiter = RateLimiter("vonage", rate=10, burst=5, store=store)
    assert waits(limiter, [1] * 7) == approx([0, 0, 0, 0, 0, 0.1, 0.2])

    clock.value += 10  # idle long enough to refill the bucket
    assert waits(limiter, [2, 2, 2]) == approx([0, 0, 0.1])


def test_a_batch_larger_than_the_burst_waits_for_a_full_bucket(store, clock):
    limiter = RateLimiter("plivo", rate=5, burst=2, store=store)
    assert waits(limiter, [1, 10]) == approx([0, 0.2])
    assert limiter.reserve(1) == approx(2.0)


def test_waits_shrink_as_time_passes(store, clock):
    limiter = RateLimiter("vonage", rate=10, store=store)
    waits(limiter, [1] * 10)
    clock.value += 0.55
    assert limiter.reserve(1) == approx(0.45)


def test_acquire_sleeps_until_the_reserved_slot(store, clock):
    limiter = RateLimiter("vonage", rate=4, store=store)
    assert [limiter.acquire(1) for _ in range(3)] == approx([0, 0.25, 0.25])
    assert clock.slept == approx([0.25, 0.25])


def test_two_limiters_with_the_same_key_share_one_schedule(store):
    # Two instances stand for two worker processes.
    first = RateLimiter("sinch", rate=10, store=store)
    second = RateLimiter("sinch", rate=10, store=store)
    other_account = RateLimiter("plivo", rate=10, store=store)

    got = [(first if n % 2 else second).reserve(1) for n in range(6)]
    assert got == approx([0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert other_account.reserve(1) == 0


def test_zero_cost_reservations_book_nothing(store):
    limiter = RateLimiter("vonage", rate=10, store=store)
    assert waits(limiter, [0, 1, 0, 1]) == approx([0, 0, 0, 0.1])


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (10, 0.5)]
)
def test_limiter_refuses_nonsense_settings(rate, burst):
    with pytest.raises(ValueError, match=r"rate|burst"):
        RateLimiter("x", rate=rate, burst=burst, store=LocalStore())


def test_limiter_refuses_a_negative_cost():
    with pytest.raises(ValueError, match="cost"):
        RateLimiter("x", rate=1, store=LocalStore()).reserve(-1)


# --- Rate limiter: slowing down after 429 ---------------------------------------------


def test_slow_down_halves_the_rate_for_every_limiter_on_the_key(store, clock):
    first = RateLimiter("vonage", rate=10, store=store)
    second = RateLimiter("vonage", rate=10, store=store)

    assert first.slow_down(factor=0.5, for_seconds=30) == approx(5)
    assert second.effective_rate() == approx(5)
    assert waits(second, [1, 1, 1]) == approx([0, 0.2, 0.4])


def test_rate_recovers_step_by_step_to_the_configured_rate(store, clock):
    limiter = RateLimiter("vonage", rate=10, store=store)
    limiter.slow_down(factor=0.5, for_seconds=30)

    seen = []
    for offset in (29.9, 30, 60, 90, 120, 1000):
        clock.value = T0 + offset
        seen.append(limiter.effective_rate())
    assert seen == approx([5, 6.25, 7.8125, 9.765625, 10, 10])


def test_throttling_replies_to_traffic_booked_before_a_slow_down_count_once(
    store, clock
):
    limiter = RateLimiter("vonage", rate=10, store=store)
    waits(limiter, [1] * 10)  # booked up to T0 + 1 at the full rate
    limiter.slow_down(factor=0.5)
    # Another worker's 429 from the same burst arrives: still half, not a quarter.
    clock.value += 1.5
    assert limiter.slow_down(factor=0.5) == approx(5)

    # A 429 after the old traffic has settled means half is still too fast.
    clock.value = T0 + 2.5
    assert limiter.slow_down(factor=0.5) == approx(2.5)


def test_repeated_slow_downs_stop_at_the_minimum_factor(store, clock):
    limiter = RateLimiter("vonage", rate=100, store=store)
    for _ in range(20):
        clock.value += 5
        limiter.slow_down(factor=0.1)
    assert limiter.effective_rate() == approx(100 * pacing.MIN_FACTOR)


# --- Circuit breaker ------------------------------------------------------------------


def test_circuit_opens_after_the_threshold_of_consecutive_failures(store, clock):
    breaker = CircuitBreaker("vonage", failure_threshold=3, store=store)
    assert [breaker.record_failure() for _ in range(3)] == ["closed", "closed", "open"]
    assert breaker.state() == "open"
    assert breaker.opened_at == T0
    assert not breaker.allow()


def test_a_success_resets_the_failure_count(store, clock):
    breaker = CircuitBreaker("vonage", failure_threshold=3, store=store)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state() == "closed"
    assert breaker.allow()
    assert breaker.opened_at is None


def test_half_open_circuit_lets_one_trial_through_per_period(store, clock):
    worker_a = CircuitBreaker(
        "vonage", failure_threshold=1, reset_after=30, store=store
    )
    worker_b = CircuitBreaker(
        "vonage", failure_threshold=1, reset_after=30, store=store
    )
    worker_a.record_failure()

    clock.value = T0 + 29
    assert (worker_a.state(), worker_b.allow()) == ("open", False)

    clock.value = T0 + 30
    assert worker_b.state() == "half_open"
    assert [worker_b.allow(), worker_a.allow(), worker_b.allow()] == [
        True,
        False,
        False,
    ]
    # The trial's worker died without reporting: one more trial a period later.
    clock.value = T0 + 60
    assert [worker_a.allow(), worker_b.allow()] == [True, False]


def test_failed_trial_reopens_the_circuit_and_success_closes_it(store, clock):
    first = CircuitBreaker("sinch", failure_threshold=2, reset_after=10, store=store)
    second = CircuitBreaker("sinch", failure_threshold=2, reset_after=10, store=store)
    first.record_failure()
    second.record_failure()
    assert first.state() == "open"

    clock.value = T0 + 10
    assert second.allow()
    assert second.record_failure() == "open"
    assert first.opened_at == T0 + 10

    clock.value = T0 + 20
    assert first.allow()
    first.record_success()
    assert (second.state(), second.allow(), second.opened_at) == ("closed", True, None)


def test_failures_while_open_do_not_postpone_the_trial(store, clock):
    breaker = CircuitBreaker("plivo", failure_threshold=1, reset_after=30, store=store)
    breaker.record_failure()
    clock.value = T0 + 5
    assert breaker.record_failure() == "open"  # a batch sent before it opened
    clock.value = T0 + 30
    assert breaker.allow()


# --- Stores ---------------------------------------------------------------------------


def test_local_store_books_every_reservation_once_across_threads(clock):
    limiter = RateLimiter("vonage", rate=10, store=LocalStore())
    results: list[float] = []
    lock = threading.Lock()

    def reserve_many() -> None:
        mine = [limiter.reserve(1) for _ in range(25)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=reserve_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # The clock stands still: 200 units at 10/s take exactly 0.0 … 19.9 s.
    assert sorted(results) == approx([n / 10 for n in range(200)])
    assert limiter.reserve(1) == approx(20.0)


def test_redis_store_books_every_reservation_once_across_threads(redis_store, clock):
    limiter = RateLimiter("vonage", rate=10, store=redis_store)
    results: list[float] = []
    lock = threading.Lock()

    def reserve_many() -> None:
        mine = [limiter.reserve(2) for _ in range(10)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=reserve_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == approx([n / 5 for n in range(40)])


def test_redis_store_on_server_time_shares_a_schedule(redis_store):
    on_server_time = RedisStore(REDIS_URL, prefix=redis_store.prefix, server_time=True)
    first = RateLimiter("vonage", rate=1, store=on_server_time)
    second = RateLimiter("vonage", rate=1, store=on_server_time)
    assert first.reserve(1) == 0
    # Redis's clock moved on a little between the two calls, never a whole second.
    assert 0 < second.reserve(1) <= 1


@pytest.fixture
def without_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """As before campaigns.ThrottleState exists."""
    monkeypatch.setattr(pacing, "throttle_state_model", lambda: None)


def test_store_for_picks_redis_for_a_redis_cache():
    url = "redis://127.0.0.1:6379/3"
    caches_setting = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
        }
    }
    with override_settings(CACHES=caches_setting):
        store = store_for()
    assert isinstance(store, RedisStore)
    assert store.client.connection_pool.connection_kwargs["db"] == 3


def test_store_for_uses_a_shared_cache_when_there_is_no_model(without_model: None):
    caches_setting = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "cache_table",
        }
    }
    with override_settings(CACHES=caches_setting):
        assert isinstance(store_for(), CacheStore)


def test_store_for_falls_back_to_this_process_for_a_local_cache(without_model: None):
    first, second = store_for(), store_for()
    assert isinstance(first, LocalStore)
    assert first is second  # limiters made apart still share the schedule


def test_model_store_says_what_is_missing_without_the_model(without_model: None):
    with pytest.raises(LookupError, match="ThrottleState"):
        ModelStore()


@pytest.fixture
def model_store(transactional_db: None, clock: FakeClock) -> Iterator[ModelStore]:
    """A ModelStore on a stand-in for the proposed campaigns.ThrottleState model."""
    with isolate_apps("campaigns"):

        class ThrottleState(models.Model):
            key = models.CharField(max_length=200)
            tat = models.FloatField(default=0.0)
            state = models.JSONField(default=dict)
            updated_at = models.DateTimeField(auto_now=True)

            class Meta:
                app_label = "campaigns"
                db_table = "test_throttle_state"
                constraints = [
                    models.UniqueConstraint(
                        fields=["key"], name="test_throttle_state_key_unique"
                    )
                ]

            def __str__(self) -> str:
                return self.key

        with connection.schema_editor() as editor:
            editor.create_model(ThrottleState)
        try:
            yield ModelStore(ThrottleState)
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(ThrottleState)


def test_model_store_shares_one_schedule_between_limiters(model_store, clock):
    first = RateLimiter("vonage", rate=10, store=model_store)
    second = RateLimiter("vonage", rate=10, store=model_store)
    got = [
        (first if n % 2 else second).reserve(cost) for n, cost in enumerate([3, 1, 1])
    ]
    assert got == approx([0, 0.3, 0.4])
    assert model_store.model.objects.get(key="limiter:vonage").tat == approx(T0 + 0.5)


def test_model_store_keeps_slow_downs_and_circuits(model_store, clock):
    limiter = RateLimiter("vonage", rate=10, store=model_store)
    limiter.reserve(1)
    limiter.slow_down(factor=0.5)
    assert limiter.effective_rate() == approx(5)
    assert limiter.reserve(1) == approx(0.1)
    assert limiter.reserve(1) == approx(0.3)

    breaker = CircuitBreaker("vonage", failure_threshold=1, store=model_store)
    breaker.record_failure()
    assert breaker.state() == "open"
    clock.value += 30
    assert [breaker.allow(), breaker.allow()] == [True, False]


def test_store_for_prefers_the_model_to_any_cache_but_redis(
    model_store: ModelStore, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(pacing, "throttle_state_model", lambda: model_store.model)
    store = store_for()
    assert isinstance(store, ModelStore)
    assert store.model is model_store.model
