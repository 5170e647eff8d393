"""Luigi's `luigi.notifications`: e-mail alerts are not sent by batchdeps.luigi.

batchdeps alerts through `[notify]` in config.toml (a webhook or a command). `DEBUG` is
kept so that code which sets it (Luigi's own tests do) still imports; sending an e-mail
is refused by name.
"""

from __future__ import annotations

from typing import Any

from .contrib import refusal

DEBUG = False


def send_email(*args: Any, **kwargs: Any) -> None:
    raise refusal("luigi.notifications.send_email (use [notify] in config.toml)")


def send_error_email(*args: Any, **kwargs: Any) -> None:
    raise refusal("luigi.notifications.send_error_email (use [notify] in config.toml)")
