"""The http tier: a real server on loopback, mostly around the fake engine."""

from helpers.fake_upstream import fake  # noqa: F401  (fixture)
from helpers.servers import serve  # noqa: F401  (fixture)
