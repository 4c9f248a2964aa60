"""First-party skills: written as real files into every run folder (SKILL.md each)."""

from __future__ import annotations

SKILLS: dict[str, str] = {
    "taskmachine-tasks": """---
name: taskmachine-tasks
description: Read and update Task Machine tasks with the tama CLI (status, comments, replies, summary, block).
---
# Working on a task

- `tama tasks show [TASK]` prints the task, its description and recent timeline (`--json` for data).
- `tama tasks status in_progress` when you start; `in_review` or `done` when you finish.
- `tama tasks comment "text"` posts progress on the task; `tama tasks reply COMMENT_ID "text"` answers in a thread.
- `tama tasks summary "what was done, what changed, what is left"` is required before you finish.
- `tama tasks block "what you are waiting for"` when you cannot go on.
TASK defaults to the task this run is about. Exit code 0 means done; 2 means bad input (read the message); 3 means not allowed.
""",
    "taskmachine-memory": """---
name: taskmachine-memory
description: Keep the agent's bounded markdown memory with tama memory.
---
# Your memory

- `tama memory show` prints it; `tama memory write --file notes.md` or `tama memory write "text"` replaces it.
Keep it short (it is bounded). Keep conventions, decisions, preferences; not task details.
""",
    "taskmachine-questions": """---
name: taskmachine-questions
description: Ask a person a question or request an approval; both land in their Inbox.
---
# Asking people

- `tama questions ask "question"` when you need an answer to go on.
- `tama approvals request "what you want to do and why"` before anything risky.
""",
    "taskmachine-chat": """---
name: taskmachine-chat
description: Answer in a Discuss chat.
---
# Chat

- `tama chat reply "text"` posts your answer in the chat this run is about.
""",
}

SKILL_NAMES = tuple(SKILLS)
