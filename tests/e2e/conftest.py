"""The e2e tier: real servers, the tiny engine, official clients, the CLI, a browser."""

from helpers.fake_upstream import fake  # noqa: F401  (fixture)
from helpers.servers import serve  # noqa: F401  (fixture)
