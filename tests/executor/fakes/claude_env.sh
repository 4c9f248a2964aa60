#!/bin/sh
# Reports what the run's environment offers the agent: the run variables and `tama` on PATH.
cat > /dev/null
echo '{"type":"system","subtype":"init","session_id":"fake-session-env"}'
for name in TASKMACHINE_RUN_TOKEN TASKMACHINE_API_URL TASKMACHINE_RUN_ID TASKMACHINE_HOME CLAUDE_CONFIG_DIR; do
  eval "value=\${$name:-unset}"
  echo '{"type":"assistant","message":{"content":[{"type":"text","text":"'"$name=$value"'"}]}}'
done
echo '{"type":"assistant","message":{"content":[{"type":"text","text":"tama='"$(command -v tama)"'"}]}}'
echo '{"type":"assistant","message":{"content":[{"type":"text","text":"pwd='"$(pwd)"'"}]}}'
echo '{"type":"result","subtype":"success","session_id":"fake-session-env","result":"ok"}'
