from rest_framework.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (per user for a logged-in admin, per address otherwise),
    counted in the shared cache so every web process enforces one limit.

    The count is one atomic cache increment per request in fixed windows (a minute
    for "600/min"): concurrent requests can never all read the same count and pass
    together, as DRF's read-then-write history allows.
    """

    scope = "api_key"

    def get_cache_key(self, request, view):
        if request.auth is not None and hasattr(request.auth, "key_hash"):
            ident = f"key-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        counter = f"{key}:{window}"
        # add() creates the counter only if missing; incr() is atomic in Redis and
        # in the local-memory cache.
        self.cache.add(counter, 0, self.duration + 5)
        try:
            count = self.cache.incr(counter)
        except ValueError:  # expired between add() and incr()
            self.cache.add(counter, 1, self.duration + 5)
            count = 1
        self._wait = (window + 1) * self.duration - now
        return count <= self.num_requests

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
