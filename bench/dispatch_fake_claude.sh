#!/bin/bash
# A no-op CLI shaped like `claude` for bench/dispatch.py (bash for $EPOCHREALTIME: a clock read
# without a fork). It answers the daemon's runtime detection (--version, the stream-json
# initialize request) like the real one. As a run it first appends "<run id> <wall clock>" to
# $BENCH_MARKS (the moment it runs), then prints a Claude stream-json turn. A run whose prompt
# says BENCH-TRANSCRIPT waits for the file $BENCH_GO/<run id>, then prints as many timed lines
# as that file says, one every 60 ms (so the daemon's 50 ms batching window never merges two).
start=$EPOCHREALTIME
case " $* " in
  *" --version "*)
    echo "2.1.329 (Claude Code)"
    exit 0
    ;;
  *" --input-format "*)
    read -r _
    echo '{"type":"control_response","response":{"subtype":"success","request_id":"tama-detect-1","response":{"models":[{"value":"default","displayName":"Default","supportedEffortLevels":["low","high"]}]}}}'
    exit 0
    ;;
esac
echo "${TASKMACHINE_RUN_ID:-none} $start" >>"$BENCH_MARKS"
prompt=$(cat)
echo '{"type":"system","subtype":"init","session_id":"bench-session"}'
case "$prompt" in
  *BENCH-TRANSCRIPT*)
    go="$BENCH_GO/$TASKMACHINE_RUN_ID"
    for ((w = 0; w < 3000; w++)); do
      [ -s "$go" ] && break
      sleep 0.01
    done
    lines=$(cat "$go" 2>/dev/null || echo 0)
    for ((i = 0; i < lines; i++)); do
      sleep 0.06
      echo "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"mark $i $EPOCHREALTIME\"}]}}"
    done
    ;;
esac
echo '{"type":"result","subtype":"success","session_id":"bench-session","result":"done","total_cost_usd":0,"usage":{"input_tokens":1,"output_tokens":1}}'
