"""The error base classes: every error lmrun raises on purpose derives from :class:`LmrunError`, so the
CLI catches one class and maps it to an exit code; input errors are ``ValueError`` too (pyinfra-style)."""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID_INPUT = 2
EXIT_POLICY_VIOLATION = 3
EXIT_QUOTA_SHORT = 4


class LmrunError(Exception):
    """Something lmrun knows how to explain: the CLI prints :meth:`lines` on stderr, exits ``exit_code``."""

    exit_code: ClassVar[int] = EXIT_FAILURE
    label: ClassVar[str] = "error"

    def lines(self) -> list[str]:
        return [f"{self.label}: {self}"]


class InputError(LmrunError, ValueError):
    """The input is invalid (stack config, a CLI argument, a file the user named): exit 2."""

    exit_code: ClassVar[int] = EXIT_INVALID_INPUT
