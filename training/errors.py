"""Errors a person can act on.

Every failure the user can fix (bad input, a service that is down, a missing dataset) is raised as a
subclass of :class:`ProjectError`; the CLI prints its message on one line and exits non-zero, without a
traceback. Anything else is a bug and keeps its traceback. A ProjectError is a click exception, so any click
program that meets one (Feast's own CLI loading the project's stores) prints it on one line as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

NAMED = 5  # names an error shows before it counts the rest


class ProjectError(click.ClickException):
    """A failure with a message that tells the user what to change."""

    exit_code = 2


class InputError(ProjectError):
    """The data or options given to a command are wrong; nothing was written."""


class ServiceUnavailable(ProjectError):
    """A service (PostgreSQL, Redis, MLflow) cannot be reached; the message names the setting to fix."""

    exit_code = 3


class CheckFailed(ProjectError):
    """An audit (leakage report, online/offline consistency) found a violation."""

    exit_code = 1


def name_some(names: Sequence[str], limit: int = NAMED) -> str:
    """A few names, then the count of the rest: a message about 5,000 symbols stays one readable line."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit:,} more"
