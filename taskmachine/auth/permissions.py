"""Roles own permission keys; every mutation checks one key.

| key              | owner | admin | member | viewer |
|------------------|-------|-------|--------|--------|
| workspace.manage |   x   |       |        |        |
| member.manage    |   x   |   x   |        |        |
| agent.manage     |   x   |   x   |        |        |
| team.manage      |   x   |   x   |        |        |
| runtime.manage   |   x   |       |        |        |
| machine.manage   |   x   |   x   |        |        |
| project.manage   |   x   |   x   |   x    |        |
| goal.manage      |   x   |   x   |   x    |        |
| task.create      |   x   |   x   |   x    |        |
| task.edit        |   x   |   x   |   x    |        |
| task.assign      |   x   |   x   |   x    |        |
| comment.post     |   x   |   x   |   x    |        |
| comment.react    |   x   |   x   |   x    |        |
| chat.use         |   x   |   x   |   x    |        |
| run.control      |   x   |   x   |   x    |        |
| inbox.act        |   x   |   x   |   x    |        |

Reading a workspace needs only membership (any role). Owners enable runtimes for agents, as
the product documents say; admins manage the rest of the fleet.
"""

from __future__ import annotations

from taskmachine.models.enums import Role

MEMBER_KEYS = frozenset(
    {
        "project.manage",
        "goal.manage",
        "task.create",
        "task.edit",
        "task.assign",
        "comment.post",
        "comment.react",
        "chat.use",
        "run.control",
        "inbox.act",
    }
)
ADMIN_KEYS = MEMBER_KEYS | {"member.manage", "agent.manage", "team.manage", "machine.manage"}
OWNER_KEYS = ADMIN_KEYS | {"workspace.manage", "runtime.manage"}

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.OWNER: OWNER_KEYS,
    Role.ADMIN: ADMIN_KEYS,
    Role.MEMBER: MEMBER_KEYS,
    Role.VIEWER: frozenset(),
}

ALL_KEYS = OWNER_KEYS


def permissions_for(role: Role) -> frozenset[str]:
    return ROLE_PERMISSIONS[role]


def has_permission(role: Role, key: str) -> bool:
    if key not in ALL_KEYS:
        raise KeyError(f"unknown permission key {key!r}")
    return key in ROLE_PERMISSIONS[role]
