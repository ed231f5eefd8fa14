"""The house stays shallow: the longest chain of imports Python runs when it loads the
application (type-checking-only imports left out) is at most MAX_DEPTH modules, the app
included. A longer one means a layer leans on a layer through another that it should have
been given (docs/architecture.md, "Layers")."""

from __future__ import annotations

import functools

import grimp

MAX_DEPTH = 10


def longest_chain(start: str) -> tuple[str, ...]:
    """The longest import chain from `start` through server/ and pipelines/."""
    graph = grimp.build_graph("server", "pipelines", exclude_type_checking_imports=True,
                              cache_dir=None)

    @functools.cache
    def longest(module: str) -> tuple[str, ...]:
        below = [longest(name) for name in graph.find_modules_directly_imported_by(module)]
        return (module, *max(below, key=len, default=()))

    return longest(start)


def test_the_app_loads_through_at_most_ten_levels_of_imports():
    chain = longest_chain("server.api.app")
    assert len(chain) <= MAX_DEPTH, " -> ".join(chain)


def test_the_measure_follows_real_imports():
    # The app reaches the job service through the composition root: a chain the measure
    # must see, or the limit above would hold for nothing.
    chain = longest_chain("server.wiring")
    assert chain[0] == "server.wiring" and len(chain) >= 4, chain
