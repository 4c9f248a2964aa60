"""Stream lines as the real CLIs printed them against the mock model server (trimmed of fields
the parsers do not read: long tool lists, timing and model-usage blocks)."""

from __future__ import annotations

CLAUDE_SESSION = "c19e8a47-ed84-4ecc-9ec9-cbbcbfaad517"

# claude -p … --permission-mode acceptEdits; the model ran `echo hello > out.txt`, then answered.
CLAUDE_TOOL_RUN = [
    '{"type":"system","subtype":"init","cwd":"/tmp/run","session_id":"c19e8a47-ed84-4ecc-9ec9-cbbcbfaad517","model":"claude-opus-5-5","permissionMode":"acceptEdits","apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.329","tools":["Bash","Edit","Read","Write"]}',
    '{"type":"assistant","message":{"id":"msg_0002","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{"type":"tool_use","id":"toolu_0001","name":"Bash","input":{"command":"echo hello > out.txt","description":"Run the scripted command"}}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":80,"cache_read_input_tokens":40,"cache_creation_input_tokens":0,"output_tokens":1},"context_management":null},"parent_tool_use_id":null,"session_id":"c19e8a47-ed84-4ecc-9ec9-cbbcbfaad517","uuid":"53ccbb7d-326d-4024-ba2a-3ded37b5ea14","timestamp":"2026-11-21T06:23:05.065Z"}',
    '{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_0001","type":"tool_result","content":"(Bash completed with no output)","is_error":false}]},"parent_tool_use_id":null,"session_id":"c19e8a47-ed84-4ecc-9ec9-cbbcbfaad517","uuid":"c9443fd0-6cf4-4054-ad1d-9b1a18e59826","timestamp":"2026-11-21T06:23:05.127Z","tool_use_result":{"stdout":"","stderr":"","interrupted":false,"isImage":false,"noOutputExpected":false}}',
    '{"type":"assistant","message":{"id":"msg_0003","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{"type":"text","text":"Wrote out.txt"}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":80,"cache_read_input_tokens":40,"cache_creation_input_tokens":0,"output_tokens":1},"context_management":null},"parent_tool_use_id":null,"session_id":"c19e8a47-ed84-4ecc-9ec9-cbbcbfaad517","uuid":"f8c28ae9-1afc-4e30-adbe-b7907c2e5151","timestamp":"2026-11-21T06:23:05.145Z"}',
    '{"duration_api_ms":78,"stop_reason":"end_turn","session_id":"c19e8a47-ed84-4ecc-9ec9-cbbcbfaad517","total_cost_usd":0.001856,"usage":{"input_tokens":160,"cache_creation_input_tokens":0,"cache_read_input_tokens":80,"output_tokens":60,"output_tokens_details":{"thinking_tokens":0},"service_tier":"standard"},"permission_denials":[],"terminal_reason":"completed","is_error":false,"num_turns":2,"subtype":"success","api_error_status":null,"result":"Wrote out.txt","type":"result","duration_ms":261}',
]

# No permission: the Bash call was denied (default mode).
CLAUDE_DENIED = [
    '{"type":"system","subtype":"permission_denied","tool_name":"Bash","tool_use_id":"toolu_0001","message":"Output redirection to \'/tmp/run/out.txt\' needs approval.","session_id":"d4b9217e-a238-49cb-a207-2d8d8d6f1439"}',
    '{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"Output redirection to \'/tmp/run/out.txt\' needs approval.","is_error":true,"tool_use_id":"toolu_0001"}]},"parent_tool_use_id":null,"session_id":"d4b9217e-a238-49cb-a207-2d8d8d6f1439"}',
]

# The model server answered 401.
CLAUDE_AUTH_FAILURE = [
    '{"type":"assistant","message":{"id":"ef5e829f-0f1d-432d-927b-154b631318f0","model":"<synthetic>","role":"assistant","stop_reason":"stop_sequence","type":"message","usage":{"input_tokens":0,"output_tokens":0},"content":[{"type":"text","text":"Failed to authenticate. API Error: 401 invalid x-api-key"}]},"parent_tool_use_id":null,"session_id":"7208e970-838d-462e-9fc3-503b9ad2844c","error":"authentication_failed","request_id":"req_mock","is_api_error_message":true,"api_error_status":401,"api_error_type":"authentication_error"}',
    '{"duration_api_ms":0,"stop_reason":"stop_sequence","session_id":"7208e970-838d-462e-9fc3-503b9ad2844c","total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0},"permission_denials":[],"terminal_reason":"api_error","is_error":true,"num_turns":1,"subtype":"success","api_error_status":401,"api_error_type":"authentication_error","result":"Failed to authenticate. API Error: 401 invalid x-api-key","type":"result"}',
]

# --resume with an id that has no session file.
CLAUDE_UNKNOWN_SESSION = [
    '{"type":"result","subtype":"error_during_execution","duration_ms":0,"is_error":true,"num_turns":0,"session_id":"3068fd09-6f6d-42be-befb-03e1e959d539","total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0},"permission_denials":[],"errors":["No conversation found with session ID: 3068fd09-6f6d-42be-befb-03e1e959d539"]}',
]

CODEX_THREAD = "01a1fcc1-6832-7b93-8d87-81cc4dfe61fc"

# codex exec --json -m gpt-5.5 -c sandbox_mode="workspace-write"; ran a command, then answered.
CODEX_TOOL_RUN = [
    '{"type":"thread.started","thread_id":"01a1fcc1-6832-7b93-8d87-81cc4dfe61fc"}',
    '{"type":"turn.started"}',
    '{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc \'echo hello > out.txt\'","aggregated_output":"","exit_code":null,"status":"in_progress"}}',
    '{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc \'echo hello > out.txt\'","aggregated_output":"","exit_code":0,"status":"completed"}}',
    '{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"First done"}}',
    '{"type":"turn.completed","usage":{"input_tokens":240,"cached_input_tokens":80,"cache_write_input_tokens":0,"output_tokens":60,"reasoning_output_tokens":14}}',
]

# The same thread resumed twice more: Codex's usage counts the whole thread so far.
CODEX_RESUMED_USAGE = '{"type":"turn.completed","usage":{"input_tokens":600,"cached_input_tokens":200,"cache_write_input_tokens":0,"output_tokens":150,"reasoning_output_tokens":35}}'

# A non-fatal notice (unknown model metadata) and a failing command in the sandbox.
CODEX_NOTICES = [
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `mock-model` not found. Defaulting to fallback metadata; this can degrade performance and cause issues."}}',
    '{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc \'echo x > /root/probe.txt\'","aggregated_output":"/bin/bash: line 1: /root/probe.txt: Read-only file system\\n","exit_code":1,"status":"failed"}}',
]

# The model server answered 401.
CODEX_AUTH_FAILURE = [
    '{"type":"thread.started","thread_id":"01a1fcc1-a456-72e0-9755-d5c7e59f07b6"}',
    '{"type":"turn.started"}',
    '{"type":"error","message":"unexpected status 401 Unauthorized: Incorrect API key provided., url: http://127.0.0.1:40023/v1/responses"}',
    '{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: Incorrect API key provided., url: http://127.0.0.1:40023/v1/responses"}}',
]
