#!/bin/sh
# Codex-shaped output: a command starts, the stream reports an error, the process panics.
cat > /dev/null
echo '{"type":"thread.started","thread_id":"t-1"}'
echo '{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"make","status":"in_progress"}}'
echo '{"type":"error","message":"stream disconnected before completion"}'
echo "thread 'main' panicked at core/src/lib.rs:1:1" >&2
exit 101
