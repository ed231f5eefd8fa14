"""The e2e tier: real servers, the tiny engine, official clients, the CLI, a browser."""

from helpers.browser import browser  # noqa: F401  (fixture)
from helpers.fake_upstream import fake  # noqa: F401  (fixture)
from helpers.servers import serve  # noqa: F401  (fixture)
