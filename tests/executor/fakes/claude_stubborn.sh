#!/bin/sh
# Ignores SIGTERM, and so does the child it starts; both write their pid to $FAKE_PIDS.
cat > /dev/null
trap '' TERM
sh -c 'trap "" TERM; echo $$ >> "$FAKE_PIDS"; while :; do sleep 0.1; done' &
echo $$ >> "$FAKE_PIDS"
echo '{"type":"system","subtype":"init","session_id":"fake-session-stubborn"}'
while :; do sleep 0.1; done
