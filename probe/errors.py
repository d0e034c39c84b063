"""netprobe's exceptions: one root, each subclass carrying its exit code.

    NetprobeError                 (exit 3 unless a subclass says otherwise)
    ├── InputError                exit 2: the user gave us something we cannot use
    │   ├── SpecError             a bad expect.yaml: one located problem per line
    │   └── ManifestError         a bad Kubernetes manifest given with -f
    └── ProbeError                exit 3: we could not probe
        ├── ClusterError          the Kubernetes API refused or failed
        │   ├── TransientError    worth retrying (429, 5xx, dropped connection)
        │   └── PermissionDenied  401/403: RBAC is missing a verb
        └── Interrupted           SIGINT/SIGTERM: cleaned up, then stopped

The CLI has one handler that turns any NetprobeError into its message and exit code.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2
EXIT_CANNOT_PROBE = 3


class NetprobeError(Exception):
    """Root of every error netprobe raises on purpose."""

    exit_code = EXIT_CANNOT_PROBE


class InputError(NetprobeError):
    """Something the user passed cannot be used (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class SpecError(InputError):
    """One or more located problems in an expectation spec."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ManifestError(InputError):
    """A Kubernetes manifest passed with -f is unreadable or malformed."""


class ProbeError(NetprobeError):
    """The probe could not be carried out (exit 3)."""


class ClusterError(ProbeError):
    """The Kubernetes API refused or failed a request."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class TransientError(ClusterError):
    """A failure worth retrying: throttling, server errors, dropped connections."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status)


class PermissionDenied(ClusterError):
    """The credentials lack a permission netprobe needs."""


class Interrupted(ProbeError):
    """The run was interrupted by a signal; probe pods were cleaned up."""

    exit_code = 130
