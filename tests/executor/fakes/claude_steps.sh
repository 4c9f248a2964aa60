#!/bin/sh
# $FAKE_STEPS text lines, $FAKE_PAUSE seconds apart (default 0: a flood), then success. Its pid
# goes to $FAKE_PIDS when set.
cat > /dev/null
[ -n "$FAKE_PIDS" ] && echo $$ >> "$FAKE_PIDS"
echo '{"type":"system","subtype":"init","session_id":"fake-session-steps"}'
i=0
while [ "$i" -lt "${FAKE_STEPS:-10}" ]; do
  echo '{"type":"assistant","message":{"content":[{"type":"text","text":"step '"$i"'"}]}}'
  [ "${FAKE_PAUSE:-0}" != 0 ] && sleep "$FAKE_PAUSE"
  i=$((i + 1))
done
echo '{"type":"result","subtype":"success","session_id":"fake-session-steps","result":"done","usage":{"input_tokens":1,"output_tokens":1}}'
