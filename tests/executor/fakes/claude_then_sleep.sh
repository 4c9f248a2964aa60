#!/bin/sh
# Writes its pid to $FAKE_PIDS, says $FAKE_STEPS things $FAKE_PAUSE seconds apart, then sleeps
# quietly (so it outlives a killed daemon without dying of a broken pipe).
cat > /dev/null
echo $$ >> "$FAKE_PIDS"
echo '{"type":"system","subtype":"init","session_id":"fake-session-sleep"}'
i=0
while [ "$i" -lt "${FAKE_STEPS:-10}" ]; do
  echo '{"type":"assistant","message":{"content":[{"type":"text","text":"step '"$i"'"}]}}'
  sleep "${FAKE_PAUSE:-0.1}"
  i=$((i + 1))
done
exec sleep 600
