"""Where the CLIs send model requests, when not to their default provider.

Read from, first found wins:

    TASKMACHINE_PROVIDER_OVERRIDES   JSON of ProviderOverrides (env var)
    "provider_overrides"             the same JSON object, as a key of ~/.taskmachine/config.json

e.g. {"claude": {"base_url": "http://127.0.0.1:9000", "api_key": "..."},
      "codex": {"base_url": "http://127.0.0.1:9000/v1", "api_key": "..."}}

None set means each CLI's own configuration and login.
"""

from __future__ import annotations

import os

from pydantic import ValidationError

from taskmachine.daemon.adapters import ProviderOverrides
from taskmachine.daemon.config import ConfigError, MachineConfig

ENV_VAR = "TASKMACHINE_PROVIDER_OVERRIDES"
CONFIG_KEY = "provider_overrides"


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {str(first['msg']).removeprefix('Value error, ')}"


def load_provider_overrides(config: MachineConfig) -> ProviderOverrides:
    """The overrides in effect; raises ConfigError naming the source when they are invalid."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw:
        try:
            return ProviderOverrides.model_validate_json(raw)
        except ValidationError as exc:
            raise ConfigError(f"{ENV_VAR}: {_first_error(exc)}") from None
    value = (config.model_extra or {}).get(CONFIG_KEY)
    if value is None:
        return ProviderOverrides()
    try:
        return ProviderOverrides.model_validate(value)
    except ValidationError as exc:
        raise ConfigError(f"config {CONFIG_KEY}: {_first_error(exc)}") from None
