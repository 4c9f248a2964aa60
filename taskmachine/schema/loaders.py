"""DataLoaders, built fresh for every operation (and every subscription event).

Each loader answers a whole batch of keys with one statement, so a page of tasks with their
assignees, tags and comment counts costs a fixed number of queries whatever its size.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from strawberry.dataloader import DataLoader

from taskmachine import models as m

if TYPE_CHECKING:
    from taskmachine.schema.scope import OperationScope

R = TypeVar("R")


class Loaders:
    def __init__(self, scope: OperationScope) -> None:
        self._scope = scope
        self.user = self._by_id(m.User)
        self.agent = self._by_id(m.Agent)
        self.team = self._by_id(m.Team)
        self.project = self._by_id(m.Project)
        self.goal = self._by_id(m.Goal)
        self.task = self._by_id(m.Task)
        self.comment = self._by_id(m.Comment)
        self.workspace = self._by_id(m.Workspace)
        self.machine = self._by_id(m.Machine)
        self.runtime = self._by_id(m.Runtime)
        self.run = self._by_id(m.Run)
        self.chat = self._by_id(m.Chat)
        self.tags_by_task: DataLoader[uuid.UUID, list[str]] = DataLoader(self._tags)
        self.comment_count_by_task: DataLoader[uuid.UUID, int] = DataLoader(
            self._counter(m.Comment.task_id)
        )
        self.reply_count_by_comment: DataLoader[uuid.UUID, int] = DataLoader(
            self._counter(m.Comment.parent_id)
        )
        self.mentions_by_comment = self._grouped(m.CommentMention, m.CommentMention.comment_id)
        self.reactions_by_comment = self._grouped(m.Reaction, m.Reaction.comment_id)
        self.members_by_team = self._grouped(m.TeamMember, m.TeamMember.team_id)
        self.runtimes_by_machine = self._grouped(m.Runtime, m.Runtime.machine_id)
        self.workspace_ids_by_machine: DataLoader[uuid.UUID, list[uuid.UUID]] = DataLoader(
            self._machine_workspaces
        )
        # Key: (workspace_id, user_id) → role or None.
        self.role: DataLoader[tuple[uuid.UUID, uuid.UUID], m.Role | None] = DataLoader(self._roles)

    def release(self) -> None:
        """Drop every loader and what it cached, once the operation is over. The loaders' batch
        functions refer back to this object, so without this each operation left its loaders,
        their futures and the rows they loaded as a cycle for the garbage collector (thousands
        of objects per request: a collector pass every half second under load)."""
        for value in vars(self).values():
            if isinstance(value, DataLoader):
                value.clear_all()
        vars(self).clear()

    async def _all(self, statement: sa.Executable) -> Sequence[Any]:
        async with self._scope.db() as session:
            rows: Sequence[Any] = (await session.execute(statement)).all()
            return rows

    def _by_id(self, model: type[R]) -> DataLoader[uuid.UUID, R | None]:
        async def load(keys: list[uuid.UUID]) -> list[R | None]:
            rows = await self._all(sa.select(model).where(model.id.in_(keys)))  # type: ignore[attr-defined]
            found = {row[0].id: row[0] for row in rows}
            return [found.get(key) for key in keys]

        return DataLoader(load)

    def _grouped(self, model: type[R], column: Any) -> DataLoader[uuid.UUID, list[R]]:
        async def load(keys: list[uuid.UUID]) -> list[list[R]]:
            rows = await self._all(sa.select(model).where(column.in_(keys)))
            groups: dict[uuid.UUID, list[R]] = defaultdict(list)
            for (row,) in rows:
                groups[getattr(row, column.key)].append(row)
            return [groups.get(key, []) for key in keys]

        return DataLoader(load)

    def _counter(self, column: Any) -> Any:
        async def load(keys: list[uuid.UUID]) -> list[int]:
            rows = await self._all(
                sa.select(column, sa.func.count()).where(column.in_(keys)).group_by(column)
            )
            counts = {key: count for key, count in rows}
            return [counts.get(key, 0) for key in keys]

        return load

    async def _tags(self, keys: list[uuid.UUID]) -> list[list[str]]:
        rows = await self._all(
            sa.select(m.TaskTag.task_id, m.TaskTag.tag)
            .where(m.TaskTag.task_id.in_(keys))
            .order_by(m.TaskTag.tag)
        )
        groups: dict[uuid.UUID, list[str]] = defaultdict(list)
        for task_id, tag in rows:
            groups[task_id].append(tag)
        return [groups.get(key, []) for key in keys]

    async def _machine_workspaces(self, keys: list[uuid.UUID]) -> list[list[uuid.UUID]]:
        rows = await self._all(
            sa.select(m.MachineWorkspace.machine_id, m.MachineWorkspace.workspace_id).where(
                m.MachineWorkspace.machine_id.in_(keys)
            )
        )
        groups: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for machine_id, workspace_id in rows:
            groups[machine_id].append(workspace_id)
        return [groups.get(key, []) for key in keys]

    async def _roles(self, keys: list[tuple[uuid.UUID, uuid.UUID]]) -> list[m.Role | None]:
        workspace_ids = {k[0] for k in keys}
        user_ids = {k[1] for k in keys}
        rows = await self._all(
            sa.select(m.Membership.workspace_id, m.Membership.user_id, m.Membership.role).where(
                m.Membership.workspace_id.in_(workspace_ids), m.Membership.user_id.in_(user_ids)
            )
        )
        roles = {(w, u): role for w, u, role in rows}
        return [roles.get(key) for key in keys]
