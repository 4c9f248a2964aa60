"""The workspace's data model (SQLAlchemy 2, typed, async). Importing this registers every table."""

from taskmachine.models.agents import Agent, Team, TeamMember
from taskmachine.models.base import Base, new_id, utcnow
from taskmachine.models.chats import Chat, ChatMessage
from taskmachine.models.comments import Comment, CommentMention, Reaction
from taskmachine.models.enums import (
    ApprovalStatus,
    AutonomyLevel,
    GoalStatus,
    InboxKind,
    InboxStatus,
    MachineStatus,
    Role,
    RunStatus,
    TaskPriority,
    TaskStatus,
    TimelineKind,
    TriggerKind,
)
from taskmachine.models.inbox import InboxItem
from taskmachine.models.machines import (
    Machine,
    MachineApproval,
    MachineToken,
    MachineWorkspace,
    Runtime,
)
from taskmachine.models.outbox import OutboxMessage
from taskmachine.models.people import ApiToken, MagicLink, User, UserSession
from taskmachine.models.runs import Run, RunTransition, TranscriptChunk
from taskmachine.models.timeline import TimelineEvent
from taskmachine.models.work import Goal, Project, Task, TaskTag
from taskmachine.models.workspaces import Membership, Workspace

__all__ = [
    "Agent",
    "ApiToken",
    "ApprovalStatus",
    "AutonomyLevel",
    "Base",
    "Chat",
    "ChatMessage",
    "Comment",
    "CommentMention",
    "Goal",
    "GoalStatus",
    "InboxItem",
    "InboxKind",
    "InboxStatus",
    "Machine",
    "MachineApproval",
    "MachineStatus",
    "MachineToken",
    "MachineWorkspace",
    "MagicLink",
    "Membership",
    "OutboxMessage",
    "Project",
    "Reaction",
    "Role",
    "Run",
    "RunStatus",
    "RunTransition",
    "Runtime",
    "Task",
    "TaskPriority",
    "TaskStatus",
    "TaskTag",
    "Team",
    "TeamMember",
    "TimelineEvent",
    "TimelineKind",
    "TranscriptChunk",
    "TriggerKind",
    "User",
    "UserSession",
    "Workspace",
    "new_id",
    "utcnow",
]
