#!/bin/sh
# Codex-shaped output with bytes that are not UTF-8 inside JSON strings and on a line of their own.
cat > /dev/null
echo '{"type":"thread.started","thread_id":"t-2"}'
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"caf\351 \377 ok"}}\n'
printf '\377\376\000\201 binary junk\n'
printf '{"type":"item.completed","item":{"id":"i2","type":"command_execution","command":"ls","aggregated_output":"\200\201\\n","exit_code":0,"status":"completed"}}\n'
echo '{"type":"turn.completed","usage":{"input_tokens":5,"output_tokens":2}}'
