"""The `tasks` connection (the board's columns): the API's hottest query, read in one statement.

The page's statement returns the tasks table's columns as plain rows (no ORM objects, no
identity map) plus what the nodes ask for: the comment count and tags as columns, and the
assigned person's fields from a join. Assigned agents come in one more batch. Those fields then
resolve from the row, with no coroutine or DataLoader future each.

Statements are built once per shape (which filters, extras and cursor are given) with bound
parameters, so a request neither rebuilds the expression nor recomputes its cache key.
"""

from __future__ import annotations

import functools
import json
import operator
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import strawberry
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from strawberry.types.nodes import SelectedField, Selection

from taskmachine import models as m
from taskmachine.domain import access, validate
from taskmachine.schema.context import Info
from taskmachine.schema.helpers import db, loaders, need_id, principal
from taskmachine.schema.pagination import Connection, check_first, connection, decode_cursor
from taskmachine.schema.scope import current_scope
from taskmachine.schema.types.agents import Agent
from taskmachine.schema.types.people import User
from taskmachine.schema.types.work import Task, TaskExtras

if TYPE_CHECKING:
    from taskmachine.schema.ops.work import TaskFilter

TASKS = m.Task.__table__
TAGS = m.TaskTag.__table__
COMMENTS = m.Comment.__table__
USERS = m.User.__table__
MEMBERSHIPS = m.Membership.__table__


class _TagListType(sa.types.TypeDecorator[list[str]]):
    """A task's tags in tag order: a PostgreSQL array, or SQLite's JSON array (sorted here:
    SQLite's default collation compares code points, as Python does)."""

    impl = sa.Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return sorted(json.loads(value))
        return list(value)


class TagList(FunctionElement[list[str]]):
    """The aggregated tags of the rows it runs over (aggregate arrays differ by database)."""

    type = _TagListType()
    name = "tag_list"
    inherit_cache = True


@compiles(TagList)
def _tag_list_sqlite(element: TagList, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array({compiler.process(element.clauses, **kw)})"


@compiles(TagList, "postgresql")
def _tag_list_postgres(element: TagList, compiler: SQLCompiler, **kw: Any) -> str:
    tag = compiler.process(element.clauses, **kw)
    return f"array_agg({tag} ORDER BY {tag})"


# Each filter as a condition on bound parameters named after it; the value goes in `params`.
CONDITIONS: dict[str, Callable[[], sa.ColumnElement[bool]]] = {
    "status": lambda: TASKS.c.status.in_(sa.bindparam("status", expanding=True)),
    "priority": lambda: TASKS.c.priority.in_(sa.bindparam("priority", expanding=True)),
    "assignee_user_id": lambda: TASKS.c.assignee_user_id == sa.bindparam("assignee_user_id"),
    "assignee_agent_id": lambda: TASKS.c.assignee_agent_id == sa.bindparam("assignee_agent_id"),
    "unassigned": lambda: sa.and_(
        TASKS.c.assignee_user_id.is_(None), TASKS.c.assignee_agent_id.is_(None)
    ),
    "project_id": lambda: TASKS.c.project_id == sa.bindparam("project_id"),
    "goal_id": lambda: TASKS.c.goal_id == sa.bindparam("goal_id"),
    "parent_id": lambda: TASKS.c.parent_id == sa.bindparam("parent_id"),
    "tag": lambda: TASKS.c.id.in_(
        sa.select(TAGS.c.task_id).where(TAGS.c.tag == sa.bindparam("tag"))
    ),
    "search": lambda: TASKS.c.title.ilike(sa.bindparam("search")),
}


def filter_params(f: TaskFilter | None) -> dict[str, Any]:
    """The given filters' values, checked, keyed by their CONDITIONS."""
    if f is None:
        return {}
    params: dict[str, Any] = {}
    if f.status:
        params["status"] = list(f.status)
    if f.priority:
        params["priority"] = list(f.priority)
    if f.assignee_user_id:
        params["assignee_user_id"] = need_id(f.assignee_user_id, "assigneeUserId")
    if f.assignee_agent_id:
        params["assignee_agent_id"] = need_id(f.assignee_agent_id, "assigneeAgentId")
    if f.unassigned:
        params["unassigned"] = True
    if f.project_id:
        params["project_id"] = need_id(f.project_id, "projectId")
    if f.goal_id:
        params["goal_id"] = need_id(f.goal_id, "goalId")
    if f.parent_id:
        params["parent_id"] = need_id(f.parent_id, "parentId")
    if f.tag:
        params["tag"] = validate.needle(f.tag, "tag").lower()
    if f.search:
        params["search"] = f"%{validate.needle(f.search, 'search')}%"
    return params


@dataclass(frozen=True)
class Shape:
    filters: tuple[str, ...]  # in CONDITIONS' order
    member_check: bool  # a person's membership, as a condition of the statement itself
    after: bool
    comment_count: bool
    tags: bool
    assigned_person: bool


@dataclass(frozen=True)
class Statements:
    page: sa.Select[Any]
    count: sa.Select[Any]
    # Positions of the extra columns in a page row (after the tasks table's own).
    comment_count: int
    tags: int
    assigned_person: int


@functools.lru_cache(maxsize=256)
def statements(shape: Shape) -> Statements:
    conditions = [TASKS.c.workspace_id == sa.bindparam("workspace_id")]
    conditions += [CONDITIONS[name]() for name in shape.filters]
    if shape.member_check:
        conditions.append(
            sa.exists().where(
                MEMBERSHIPS.c.workspace_id == sa.bindparam("member_workspace_id"),
                MEMBERSHIPS.c.user_id == sa.bindparam("member_user_id"),
            )
        )
    count = sa.select(sa.func.count()).select_from(TASKS).where(*conditions)
    columns: list[Any] = list(TASKS.c)
    positions = {}
    if shape.comment_count:
        positions["comment_count"] = len(columns)
        columns.append(
            sa.select(sa.func.count()).where(COMMENTS.c.task_id == TASKS.c.id).scalar_subquery()
        )
    if shape.tags:
        positions["tags"] = len(columns)
        columns.append(
            sa.select(TagList(TAGS.c.tag)).where(TAGS.c.task_id == TASKS.c.id).scalar_subquery()
        )
    if shape.assigned_person:
        positions["assigned_person"] = len(columns)
        columns += [USERS.c.name, USERS.c.email, USERS.c.created_at]
    page = sa.select(*columns).select_from(TASKS)
    if shape.assigned_person:
        page = page.outerjoin(USERS, USERS.c.id == TASKS.c.assignee_user_id)
    page = page.where(*conditions)
    if shape.after:
        page = page.where(TASKS.c.id > sa.bindparam("after"))
    page = page.order_by(TASKS.c.id).limit(sa.bindparam("limit", type_=sa.Integer))
    return Statements(
        page=page,
        count=count,
        comment_count=positions.get("comment_count", -1),
        tags=positions.get("tags", -1),
        assigned_person=positions.get("assigned_person", -1),
    )


_COLUMN = {column.key: i for i, column in enumerate(TASKS.c)}
_ID = _COLUMN["id"]
_ASSIGNEE_USER = _COLUMN["assignee_user_id"]
_ASSIGNEE_AGENT = _COLUMN["assignee_agent_id"]
_row_id: Callable[[sa.Row[Any]], uuid.UUID] = operator.itemgetter(_ID)


def _fields(selections: list[Selection]) -> Iterator[SelectedField]:
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        else:  # a fragment: its fields count as selected here
            yield from _fields(selection.selections)


def node_fields(info: Info) -> set[str]:
    """The fields selected on a connection's nodes; a superset, since @skip/@include are not
    evaluated (a field fetched for nothing is harmless, one missed falls back to a DataLoader)."""
    return {
        field.name
        for root in _fields(info.selected_fields)
        for edges in _fields(root.selections)
        if edges.name == "edges"
        for node in _fields(edges.selections)
        if node.name == "node"
        for field in _fields(node.selections)
    }


async def task_page(
    info: Info, wid: uuid.UUID, f: TaskFilter | None, first: int | None, after: str | None
) -> Connection[Task]:
    params = filter_params(f)
    caller = await principal(info)
    size = check_first(first, info.context.state.settings.max_page_size)
    cursor = decode_cursor(after) if after else None
    wanted = node_fields(info)
    # A person's membership is a condition of the page's own statement; only an empty page
    # asks again, to tell an outsider (NOT_FOUND) from an empty column. An agent's membership
    # needs no statement.
    member_check = caller.user_id is not None and not caller.is_agent
    shape = Shape(
        filters=tuple(name for name in CONDITIONS if name in params),
        member_check=member_check,
        after=cursor is not None,
        comment_count="commentCount" in wanted,
        tags="tags" in wanted,
        assigned_person="assignee" in wanted,
    )
    sql = statements(shape)
    params.pop("unassigned", None)  # a condition without a parameter
    params["workspace_id"] = wid
    if member_check:
        params["member_workspace_id"] = wid
        params["member_user_id"] = caller.user_id
    count_params = dict(params)
    async with db() as session:
        if not member_check:
            await access.require_member(session, caller, wid)
        rows = (
            await session.execute(sql.page, {**params, "after": cursor, "limit": size + 1})
            if cursor is not None
            else await session.execute(sql.page, {**params, "limit": size + 1})
        ).all()
        if member_check and not rows:
            await access.require_member(session, caller, wid)

    async def count() -> int:
        async with current_scope().db() as s:
            return int(await s.scalar(sql.count, count_params) or 0)

    people: dict[uuid.UUID, User] = {}
    agents_wanted: list[tuple[TaskExtras, uuid.UUID]] = []

    def convert(row: sa.Row[Any]) -> Task:
        extras = TaskExtras(
            comment_count=row[sql.comment_count] if shape.comment_count else None,
            tags=row[sql.tags] if shape.tags else None,
            has_assignee=shape.assigned_person,
        )
        if shape.assigned_person:
            person_id, agent_id = row[_ASSIGNEE_USER], row[_ASSIGNEE_AGENT]
            at = sql.assigned_person
            if person_id is not None and row[at + 1] is not None:  # the join found the person
                person = people.get(person_id)
                if person is None:
                    person = people[person_id] = User(
                        id=strawberry.ID(str(person_id)),
                        name=row[at],
                        email=row[at + 1],
                        created_at=row[at + 2],
                    )
                extras.assignee = person
            elif agent_id is not None:
                extras.has_assignee = False  # until the batch below
                agents_wanted.append((extras, agent_id))
        return Task.of_row(row, extras)

    page = connection(rows, size, id_of=_row_id, convert=convert, count=count)
    if agents_wanted:
        found = await loaders().agent.load_many(list({agent_id for _, agent_id in agents_wanted}))
        agents = {row.id: Agent.of(row) for row in found if row is not None}
        for extras, agent_id in agents_wanted:
            extras.assignee = agents.get(agent_id)
            extras.has_assignee = True
    return page
