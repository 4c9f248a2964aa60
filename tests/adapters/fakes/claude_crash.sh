#!/bin/sh
# Claude-shaped output that dies mid-line: init, one text (echoing the prompt from stdin), half a
# line, a message on stderr, then SIGKILL.
read -r prompt
echo '{"type":"system","subtype":"init","session_id":"fake-session-1"}'
echo '{"type":"assistant","message":{"content":[{"type":"text","text":"Working on: '"$prompt"'"}]}}'
printf '{"type":"assistant","message":{"content":[{"type":"te'
echo "Segmentation fault (core dumped)" >&2
kill -KILL $$
