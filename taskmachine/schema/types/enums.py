"""The model's enums under the same names, decorated in place so one class serves both."""

from __future__ import annotations

import strawberry

from taskmachine.models.enums import (
    ApprovalStatus,
    AutonomyLevel,
    GoalStatus,
    InboxKind,
    InboxStatus,
    Role,
    RunStatus,
    TaskPriority,
    TaskStatus,
    TimelineKind,
    TriggerKind,
)

for _enum in (
    ApprovalStatus,
    AutonomyLevel,
    GoalStatus,
    InboxKind,
    InboxStatus,
    Role,
    RunStatus,
    TaskPriority,
    TaskStatus,
    TimelineKind,
    TriggerKind,
):
    strawberry.enum(_enum)

__all__ = [
    "ApprovalStatus",
    "AutonomyLevel",
    "GoalStatus",
    "InboxKind",
    "InboxStatus",
    "Role",
    "RunStatus",
    "TaskPriority",
    "TaskStatus",
    "TimelineKind",
    "TriggerKind",
]
