#!/bin/sh
# Claude-shaped success: echoes the prompt (from stdin), writes a file in its folder, and can be
# slowed down with FAKE_SLEEP (seconds) to keep a slot busy.
prompt=$(cat)
echo '{"type":"system","subtype":"init","session_id":"fake-session-ok"}'
echo '{"type":"assistant","message":{"content":[{"type":"text","text":"Working on: '"$prompt"'"}]}}'
sleep "${FAKE_SLEEP:-0}"
echo "$prompt" > done.txt
echo '{"type":"result","subtype":"success","session_id":"fake-session-ok","result":"done","total_cost_usd":0.01,"usage":{"input_tokens":10,"output_tokens":5}}'
