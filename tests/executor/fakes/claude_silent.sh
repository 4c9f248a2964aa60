#!/bin/sh
# Says one thing, then goes quiet for ever (the idle limit ends it).
cat > /dev/null
echo '{"type":"system","subtype":"init","session_id":"fake-session-silent"}'
exec sleep 600
