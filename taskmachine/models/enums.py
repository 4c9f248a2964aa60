"""Every enumerated value the model stores; the GraphQL schema exposes the same members."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class TaskStatus(enum.StrEnum):
    BACKLOG = "backlog"
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    IN_REVIEW = "in_review"
    DONE = "done"
    CANCELLED = "cancelled"


class TaskPriority(enum.StrEnum):
    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class AutonomyLevel(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class GoalStatus(enum.StrEnum):
    ACTIVE = "active"
    ACHIEVED = "achieved"
    ABANDONED = "abandoned"


class MachineStatus(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    CLAIMED = "claimed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TriggerKind(enum.StrEnum):
    ASSIGNMENT = "assignment"
    COMMENT = "comment"
    REACTION = "reaction"
    CHAT = "chat"
    FOLLOW_UP = "follow_up"
    SUMMARY = "summary"
    MANUAL = "manual"


class TimelineKind(enum.StrEnum):
    CREATED = "created"
    EDITED = "edited"
    STATUS_CHANGED = "status_changed"
    PRIORITY_CHANGED = "priority_changed"
    ASSIGNED = "assigned"
    COMMENTED = "commented"
    REACTED = "reacted"
    RUN = "run"
    SUMMARY = "summary"
    REFUSAL = "refusal"
    NOOP = "noop"


class InboxKind(enum.StrEnum):
    QUESTION = "question"
    APPROVAL = "approval"
    MENTION = "mention"
    RUNTIME_STALE = "runtime_stale"
    UPDATE_NUDGE = "update_nudge"
    BLOCKED = "blocked"


class InboxStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
