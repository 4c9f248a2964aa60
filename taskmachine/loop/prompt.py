"""The compiled prompt: everything the agent needs, in a fixed order.

1. identity (profile summary and instructions)  2. the CLI contract  3. memory
4. relevant knowledge  5. trigger context (ids and metadata)  6. trigger input
A resumed session already holds 1–4, so a follow-up turn carries only 5 and 6.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taskmachine.loop.skills import SKILL_NAMES

MEMORY_GUIDANCE = (
    "Keep in memory what will matter on later jobs: conventions of this workspace, decisions "
    "and their reasons, people's preferences, where things live. Do not keep task-specific "
    "details that the task itself records. Update it with `tama memory write`."
)


@dataclass
class PromptParts:
    agent_name: str
    summary: str
    instructions: str
    memory: str
    knowledge: list[tuple[str, str]] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)
    trigger_input: str = ""


def cli_contract() -> str:
    skills = ", ".join(SKILL_NAMES)
    return (
        "You act on Task Machine by running the `tama` CLI, never by describing changes in prose. "
        "Every update you make through it is a durable record people see: comment and reply on "
        "the task (`tama tasks comment`, `tama tasks reply`), set its status "
        "(`tama tasks status`), "
        "ask a question or request an approval when you need a person (`tama questions ask`, "
        "`tama approvals request`), keep your memory (`tama memory write`), and write the "
        "completion summary when you finish (`tama tasks summary`). If you decide to do nothing, "
        "say why with a comment. Every command has --help and --json. Skills with worked "
        f"playbooks are in your working folder: {skills}."
    )


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body.strip() or '(none)'}\n"


def compile_full(parts: PromptParts) -> str:
    knowledge = "\n\n".join(f"### {title}\n{text.strip()}" for title, text in parts.knowledge)
    return "\n".join(
        [
            f"# You are {parts.agent_name}\n",
            _section("Identity", f"{parts.summary}\n\n{parts.instructions}"),
            _section("How to act: the tama CLI", cli_contract()),
            _section("Your memory", f"{MEMORY_GUIDANCE}\n\n{parts.memory or '(empty)'}"),
            _section("Relevant knowledge", knowledge),
            _section("Context", _context(parts.context)),
            _section("Request", parts.trigger_input),
        ]
    )


def compile_resumed(parts: PromptParts) -> str:
    return "\n".join(
        [_section("Context", _context(parts.context)), _section("Request", parts.trigger_input)]
    )


def _context(context: dict[str, str]) -> str:
    return "\n".join(f"- {key}: {value}" for key, value in context.items())
