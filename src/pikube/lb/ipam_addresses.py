"""The allocator's address book (`pikube.lb.ipam`): which addresses are used, by which services
on which ports, and under which sharing key; from that, the lowest address a service may use in a
range and why it may not use one (rule 4 of ipam.py). Pure.

Nothing here is proportional to a pool's size: used addresses are kept per family as sorted,
merged intervals of integers, so "lowest free address at or after x" is a binary search; the
addresses used under each sharing key are kept sorted per family.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass, field

from pikube.lb.ipam_requests import Entry, Port
from pikube.lb.model import IPAddress, IPAddressPool

# --- sets of used addresses ---------------------------------------------------------------------


class IntervalSet:
    """A set of integers stored as sorted, disjoint, non-adjacent closed intervals.

    Memory and time depend on how fragmented the set is, never on the span it covers.
    """

    __slots__ = ("_ends", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __contains__(self, n: int) -> bool:
        i = bisect_right(self._starts, n) - 1
        return i >= 0 and self._ends[i] >= n

    def add(self, n: int) -> None:
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, n) - 1
        if i >= 0 and ends[i] >= n:
            return
        joins_left = i >= 0 and ends[i] == n - 1
        joins_right = i + 1 < len(starts) and starts[i + 1] == n + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1]
            del ends[i + 1]
        elif joins_left:
            ends[i] = n
        elif joins_right:
            starts[i + 1] = n
        else:
            starts.insert(i + 1, n)
            ends.insert(i + 1, n)

    def discard(self, n: int) -> None:
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, n) - 1
        if i < 0 or ends[i] < n:
            return
        start, end = starts[i], ends[i]
        if start == end:
            del starts[i]
            del ends[i]
        elif n == start:
            starts[i] = n + 1
        elif n == end:
            ends[i] = n - 1
        else:
            ends[i] = n - 1
            starts.insert(i + 1, n + 1)
            ends.insert(i + 1, end)

    def lowest_absent(self, n: int) -> int:
        """The smallest integer >= n that is not in the set."""
        i = bisect_right(self._starts, n) - 1
        if i >= 0 and self._ends[i] >= n:
            return self._ends[i] + 1
        return n

    @property
    def interval_count(self) -> int:
        return len(self._starts)


@dataclass
class IPUse:
    """The services on one address. They all have the same sharing and backend keys."""

    sharing_key: str
    backend_key: str
    ports: dict[Port, str] = field(default_factory=dict)  # -> service key
    services: set[str] = field(default_factory=set)


# --- the book -----------------------------------------------------------------------------------


class AddressBook:
    """The uses of every allocated address, per family."""

    def __init__(self) -> None:
        self._used: dict[int, IntervalSet] = {4: IntervalSet(), 6: IntervalSet()}
        self._uses: dict[int, dict[int, IPUse]] = {4: {}, 6: {}}
        # sharing key -> family -> sorted addresses whose services use that key
        self._shared: dict[str, dict[int, list[int]]] = {}

    def take(self, entry: Entry, ips: Sequence[IPAddress]) -> None:
        """The entry's service uses these addresses, on its ports, from now on."""
        key = entry.service.key
        for ip in ips:
            n = int(ip)
            uses = self._uses[ip.version]
            use = uses.get(n)
            if use is None:
                use = uses[n] = IPUse(entry.sharing_key, entry.backend_key)
                self._used[ip.version].add(n)
                if entry.sharing_key:
                    by_family = self._shared.setdefault(entry.sharing_key, {4: [], 6: []})
                    insort(by_family[ip.version], n)
            use.services.add(key)
            for port in entry.ports:
                use.ports[port] = key

    def give_back(self, entry: Entry, ips: Sequence[IPAddress]) -> None:
        """The entry's service no longer uses these addresses (which it took with its ports)."""
        key = entry.service.key
        for ip in ips:
            n = int(ip)
            use = self._uses[ip.version][n]
            use.services.discard(key)
            for port in entry.ports:
                if use.ports.get(port) == key:
                    del use.ports[port]
            if not use.services:
                del self._uses[ip.version][n]
                self._used[ip.version].discard(n)
                if use.sharing_key:
                    shared = self._shared[use.sharing_key][ip.version]
                    del shared[bisect_left(shared, n)]

    def lowest_in(self, entry: Entry, pool: IPAddressPool, version: int) -> int | None:
        """The lowest address of this family in the pool that the entry's service may use."""
        for rng in pool.addresses:
            if rng.version == version:
                n = self.lowest_usable(entry, version, int(rng.first), int(rng.last), pool)
                if n is not None:
                    return n
        return None

    def lowest_usable(
        self, entry: Entry, version: int, first: int, last: int, pool: IPAddressPool
    ) -> int | None:
        """The lowest address in [first, last] the service may use: free, or shared under its
        own key without conflict (a lower shared one wins over a free one)."""
        used = self._used[version]
        avoid = pool.avoid_buggy_ips and version == 4
        free: int | None = used.lowest_absent(first)
        while free is not None and free <= last and avoid and free & 0xFF in (0, 0xFF):
            free = used.lowest_absent(free + 1)
        if free is not None and free > last:
            free = None
        if entry.sharing_key:
            # A lower address already shared under the same key wins over a free one.
            shared = self._shared.get(entry.sharing_key, {}).get(version, [])
            for n in shared[bisect_left(shared, first) :]:
                if n > last or (free is not None and n > free):
                    break
                if avoid and n & 0xFF in (0, 0xFF):
                    continue
                if self.conflict(version, n, entry) is None:
                    return n
        return free

    def conflict(self, version: int, n: int, entry: Entry) -> str | None:
        """Why `entry`'s service cannot use address n, or None if it can (free or shareable)."""
        use = self._uses[version].get(n)
        key = entry.service.key
        if use is None or use.services <= {key}:
            return None
        others = sorted(use.services - {key})
        owner = others[0] + (f" and {len(others) - 1} more" if len(others) > 1 else "")
        if not use.sharing_key:
            return f"is already used by {owner}, which does not allow sharing"
        if not entry.sharing_key:
            return (
                f"is already used by {owner}; sharing it needs metallb.io/allow-shared-ip "
                f"{use.sharing_key!r} on this service too"
            )
        if use.sharing_key != entry.sharing_key:
            return (
                f"is already used by {owner} with sharing key {use.sharing_key!r}, "
                f"not {entry.sharing_key!r}"
            )
        if use.backend_key != entry.backend_key:
            return (
                f"is already used by {owner}, and services with externalTrafficPolicy Local "
                "may share an address only if they select the same pods"
            )
        for proto, port in sorted(entry.ports, key=lambda p: (p[0].value, p[1])):
            user = use.ports.get((proto, port))
            if user is not None and user != key:
                return f"is already used by {user} on {proto.value} port {port}"
        return None
