"""The authenticated caller of a request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from taskmachine.models.enums import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """A person (session cookie or personal token) or an agent acting inside a run."""

    user_id: uuid.UUID | None = None
    # Set for a run token: the agent acts in exactly one workspace with its own role.
    agent_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    agent_role: Role | None = None
    # Set for a machine's access token: the daemon acting for its machine, nothing more.
    machine_id: uuid.UUID | None = None
    via: str = "session"  # "session" | "token" | "run" | "machine"

    @property
    def is_agent(self) -> bool:
        return self.agent_id is not None
