"""What goes wrong building or reading the training data: a message that says what, and the packages to install."""

from __future__ import annotations

from collections.abc import Sequence


class DatasetError(Exception):
    """The dataset cannot be built or read; the message says what is wrong."""


class MissingPackageError(DatasetError):
    """A Debian package the dataset needs is not installed."""

    def __init__(self, packages: Sequence[str], what: str) -> None:
        names = " ".join(sorted(set(packages)))
        super().__init__(f"{what} needs the Debian package(s) {names}: install with `apt-get install -y {names}`")
        self.packages = tuple(sorted(set(packages)))
