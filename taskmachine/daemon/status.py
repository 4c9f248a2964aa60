"""`tama status`: does the API accept this machine's token, and the broker its broker user?

Both checks run at once and each ends in one line: "ok", or what failed and why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from taskmachine.daemon.api import ApiClient, ApiError, ApiUnreachableError
from taskmachine.daemon.broker import probe_broker
from taskmachine.daemon.config import MachineConfig
from taskmachine.daemon.credentials import CredentialsRejectedError, MachineCredentials

THIS_MACHINE = """query ThisMachine {
  thisMachine { id name cliVersion online updateStatus minCliVersion latestCliVersion }
}"""


@dataclass(frozen=True)
class Check:
    name: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def check_api(cfg: MachineConfig, client: ApiClient) -> Check:
    credentials = MachineCredentials(cfg, client)
    try:
        data = await credentials.execute(THIS_MACHINE)
    except CredentialsRejectedError as exc:
        return Check("api", str(exc))
    except ApiUnreachableError as exc:
        return Check("api", str(exc))
    except ApiError as exc:
        return Check("api", f"{client.api_url} refused this machine: {exc}")
    machine = data["thisMachine"]
    if str(machine["id"]) != str(cfg.machine_id):
        return Check("api", f"the token belongs to machine {machine['id']}, not {cfg.machine_id}")
    return Check("api")


async def check_broker(cfg: MachineConfig) -> Check:
    assert cfg.amqp_url is not None and cfg.machine_id is not None
    problem = await probe_broker(cfg.amqp_url, str(cfg.machine_id))
    return Check("broker", problem)


async def check(cfg: MachineConfig) -> list[Check]:
    """Both checks, API first; the config must be connected (`cfg.connected`)."""
    async with ApiClient(cfg.api_url) as client:
        api, broker = await asyncio.gather(check_api(cfg, client), check_broker(cfg))
    return [api, broker]
