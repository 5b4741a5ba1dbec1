"""`Result`: the base of every result object kbatch returns.

A result is a plain-Python record of a measurement. Each subclass says what
it stores (`_fields`) and how to rebuild itself from that (`_from_fields`);
the base adds the format name and version, the checks when reading, and
atomic JSON files. No pickle: a result file is data, never code.
"""

from __future__ import annotations

import os

from kbatch._internal import io as _io

__all__ = ["Result"]


class Result:
    """Base of kbatch's result objects: `to_dict` / `from_dict` / `save` /
    `load`, with a format name (`"kbatch.<ClassName>"`) and version."""

    FORMAT_VERSION = 1

    @classmethod
    def format_name(cls) -> str:
        return f"kbatch.{cls.__name__}"

    def _fields(self) -> dict:
        raise NotImplementedError

    @classmethod
    def _from_fields(cls, data: dict):
        raise NotImplementedError

    def to_dict(self) -> dict:
        """A JSON-ready dict: `format`, `format_version` and the fields."""
        return {"format": self.format_name(), "format_version": self.FORMAT_VERSION,
                **self._fields()}

    @classmethod
    def from_dict(cls, data: dict):
        """Rebuild a result from `to_dict()` output (checked, never evaluated).

        Raises `ValueError` for another format, another version or damaged
        fields.
        """
        name = cls.__name__
        if not isinstance(data, dict) or data.get("format") != cls.format_name():
            raise ValueError(
                f"Not a kbatch {name}: expected a JSON object with 'format': "
                f"{cls.format_name()!r}.")
        version = data.get("format_version")
        if version != cls.FORMAT_VERSION:
            raise ValueError(
                f"Unsupported {name} format_version {version!r}; this kbatch "
                f"reads version {cls.FORMAT_VERSION}.")
        try:
            return cls._from_fields(data)
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"Corrupt {name}: {type(error).__name__}: {error}") \
                from None
        except ValueError as error:
            if name in str(error):
                raise
            raise ValueError(f"Corrupt {name}: {error}") from None

    def save(self, path):
        """Write the result as JSON, atomically (temporary file, then rename).
        Returns the path."""
        _io.write_json_atomic(path, self.to_dict())
        return os.fspath(path)

    @classmethod
    def load(cls, path):
        """Read a result written by `save`; a damaged file raises `ValueError`."""
        return cls.from_dict(_io.read_json(path, what=cls.__name__))
