#!/bin/sh
# Codex-shaped output with three 5 MiB lines: an agent message, a command's output, and junk.
cat > /dev/null
big() { head -c 5242880 /dev/zero | tr '\0' "$1"; }
echo '{"type":"thread.started","thread_id":"t-3"}'
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"'; big a; printf '"}}\n'
printf '{"type":"item.completed","item":{"id":"i2","type":"command_execution","command":"cat big","aggregated_output":"'; big b; printf '","exit_code":0,"status":"completed"}}\n'
big c; printf '\n'
echo '{"type":"turn.completed","usage":{"input_tokens":7,"output_tokens":3}}'
