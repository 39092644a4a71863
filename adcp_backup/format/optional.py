"""Optional dependencies of the format layer: imported where they are used, with the extra that installs them."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigurationError


def require(module: str, *, needed_for: str, extra: str) -> ModuleType:
    """``module`` imported, or a configuration error saying what needs it and which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the installation
        package = module.split(".")[0]
        raise ConfigurationError(
            f"{needed_for} needs the {package} package: pip install 'adcp-backup[{extra}]'"
        ) from exc
