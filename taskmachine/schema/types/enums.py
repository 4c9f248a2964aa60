"""The model's enums, exposed under the same names."""

from __future__ import annotations

import strawberry

from taskmachine import models as m

Role = strawberry.enum(m.Role)
TaskStatus = strawberry.enum(m.TaskStatus)
TaskPriority = strawberry.enum(m.TaskPriority)
AutonomyLevel = strawberry.enum(m.AutonomyLevel)
GoalStatus = strawberry.enum(m.GoalStatus)
ApprovalStatus = strawberry.enum(m.ApprovalStatus)
RunStatus = strawberry.enum(m.RunStatus)
TriggerKind = strawberry.enum(m.TriggerKind)
TimelineKind = strawberry.enum(m.TimelineKind)
InboxKind = strawberry.enum(m.InboxKind)
InboxStatus = strawberry.enum(m.InboxStatus)
