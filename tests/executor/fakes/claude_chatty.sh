#!/bin/sh
# Keeps talking and never finishes (only the hard limit ends it).
cat > /dev/null
echo '{"type":"system","subtype":"init","session_id":"fake-session-chatty"}'
while :; do
  echo '{"type":"assistant","message":{"content":[{"type":"text","text":"still going"}]}}'
  sleep 0.1
done
