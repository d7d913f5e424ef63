"""Reading the registry file: the I/O around :func:`cronhub.registry.parse_registry`.

The parser itself never touches the filesystem; this module reads the file and
looks callables' modules up on disk (without importing them).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from importlib.machinery import BuiltinImporter, FrozenImporter, ModuleSpec, PathFinder
from pathlib import Path

from cronhub.errors import ConfigError, ConfigIssue
from cronhub.model import Registry
from cronhub.registry import RegistryCache, decode_registry, parse_registry


def load_registry(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    cache: RegistryCache | None = None,
) -> Registry:
    """Read and validate the registry file at ``path``.

    ``environ`` defaults to :data:`os.environ`; ``cache`` is passed on to
    :func:`parse_registry`.  A callable's module is looked up
    in the registry's folder and then on :data:`sys.path`, without being
    imported.  Raises :class:`ConfigError` (naming the path when the file
    cannot be read).
    """
    name = os.fspath(path)
    try:
        raw = Path(name).read_bytes()
    except FileNotFoundError as exc:
        message = "no such file: create it, or name another with --config or CRONHUB_CONFIG"
        raise ConfigError([ConfigIssue(message, path=name)]) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigIssue(f"cannot read the registry: {reason}", path=name)]) from exc
    importlib.invalidate_caches()
    return parse_registry(
        decode_registry(raw, name),
        name,
        environ=os.environ if environ is None else environ,
        module_exists=module_exists,
        cache=cache,
    )


def module_exists(module: str, base_dir: str) -> bool:
    """Whether ``module`` can be imported from ``base_dir`` or :data:`sys.path`.

    Each level of a dotted name is resolved with :class:`PathFinder` against the
    parent's ``submodule_search_locations``, so no code runs, not even a parent
    package's ``__init__``.  Built-in and frozen top-level modules count too.
    """
    parts = module.split(".")
    spec = BuiltinImporter.find_spec(parts[0]) or FrozenImporter.find_spec(parts[0])
    if spec is None:
        spec = PathFinder.find_spec(parts[0], [base_dir, *sys.path])
    for depth in range(1, len(parts)):
        locations = _search_locations(spec)
        if not locations:
            return False
        spec = PathFinder.find_spec(".".join(parts[: depth + 1]), locations)
    return spec is not None


def _search_locations(spec: ModuleSpec | None) -> list[str]:
    if spec is None or spec.submodule_search_locations is None:
        return []
    return list(spec.submodule_search_locations)
