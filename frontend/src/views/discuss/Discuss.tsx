import { useEffect, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { useMutation, useQuery, useSubscription } from "urql";
import { graphql } from "../../gql";
import { Can, useWorkspace } from "../../app/workspace";
import { EmptyState } from "../../components/EmptyState";
import { ErrorMessage } from "../../components/ErrorMessage";
import { Loading } from "../../components/Loading";
import { personName } from "../../lib/format";
import { Transcript } from "../task/Transcript";
import { ACTIVE_RUN_STATUSES } from "../task/runMeta";

const ChatsDocument = graphql(`
  query Chats($workspaceId: ID!) {
    agents(workspaceId: $workspaceId, first: 200) {
      edges {
        node {
          id
          name
        }
      }
    }
    chats(workspaceId: $workspaceId, first: 100) {
      edges {
        node {
          id
          title
          agent {
            id
            name
          }
        }
      }
    }
  }
`);

const ChatDocument = graphql(`
  query Chat($chatId: ID!, $workspaceId: ID!) {
    chat(id: $chatId) {
      id
      title
      agent {
        id
        name
      }
    }
    chatMessages(chatId: $chatId, first: 200) {
      edges {
        node {
          id
          body
          createdAt
          runId
          author {
            __typename
            ... on User {
              id
              name
              email
            }
            ... on Agent {
              id
              name
            }
          }
        }
      }
    }
    runs(workspaceId: $workspaceId, filter: { chatId: $chatId, status: [QUEUED, DISPATCHED, CLAIMED, RUNNING] }, first: 1) {
      edges {
        node {
          id
          status
        }
      }
    }
  }
`);

const ChatLiveDocument = graphql(`
  subscription ChatLive($chatId: ID!) {
    chatMessages(chatId: $chatId) {
      id
    }
  }
`);

const StartChatDocument = graphql(`
  mutation StartChat($workspaceId: ID!, $agentId: ID!) {
    createChat(workspaceId: $workspaceId, agentId: $agentId) {
      id
    }
  }
`);

const SendChatMessageDocument = graphql(`
  mutation SendChatMessage($chatId: ID!, $body: String!) {
    sendChatMessage(chatId: $chatId, body: $body) {
      id
    }
  }
`);

/** Chats with agents: one turn at a time, the agent's reply streams in as it runs. */
export function Discuss() {
  const { workspace } = useWorkspace();
  const { chatId } = useParams();
  const navigate = useNavigate();
  const [{ data, fetching, error }, refetch] = useQuery({ query: ChatsDocument, variables: { workspaceId: workspace.id } });
  const [agentId, setAgentId] = useState("");
  const [started, startChat] = useMutation(StartChatDocument);
  if (fetching && !data) return <Loading label="Loading chats…" />;
  const chats = (data?.chats.edges ?? []).map((e) => e.node);
  const agents = (data?.agents.edges ?? []).map((e) => e.node);

  async function start(event: FormEvent) {
    event.preventDefault();
    if (!agentId) return;
    const result = await startChat({ workspaceId: workspace.id, agentId });
    if (result.data) {
      refetch({ requestPolicy: "network-only" });
      navigate(`/w/${workspace.id}/discuss/${result.data.createChat.id}`);
    }
  }

  return (
    <section className="page page--wide" aria-labelledby="discuss-title">
      <div className="page__header">
        <h1 id="discuss-title">Discuss</h1>
      </div>
      {error && <ErrorMessage error={error} />}
      <div className="split split--nav">
        <nav aria-label="Chats">
          <Can permission="chat.use">
            <form className="form" onSubmit={start} aria-label="New chat">
              <label className="field">
                <span>Chat with</span>
                <select value={agentId} onChange={(e) => setAgentId(e.target.value)}>
                  <option value="">Choose an agent</option>
                  {agents.map((a) => (
                    <option key={a.id} value={a.id}>
                      {a.name}
                    </option>
                  ))}
                </select>
              </label>
              <button type="submit" className="button" disabled={!agentId || started.fetching}>
                New chat
              </button>
              {started.error && <ErrorMessage error={started.error} compact />}
            </form>
          </Can>
          <ul className="list">
            {chats.map((c) => (
              <li key={c.id}>
                <Link className="nav__link" aria-current={c.id === chatId ? "page" : undefined} to={`/w/${workspace.id}/discuss/${c.id}`}>
                  {c.title || `Chat with ${c.agent.name}`}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        {chatId ? (
          <ChatView key={chatId} chatId={chatId} />
        ) : (
          <EmptyState title={chats.length ? "Choose a chat" : "No chats yet"} />
        )}
      </div>
    </section>
  );
}

function ChatView({ chatId }: { chatId: string }) {
  const { workspace } = useWorkspace();
  const [{ data, fetching, error }, refetch] = useQuery({ query: ChatDocument, variables: { chatId, workspaceId: workspace.id } });
  const reload = () => refetch({ requestPolicy: "network-only" });
  const [live] = useSubscription({ query: ChatLiveDocument, variables: { chatId } });
  useEffect(() => {
    if (live.data) reload();
  }, [live.data]);
  const [body, setBody] = useState("");
  const [sent, send] = useMutation(SendChatMessageDocument);
  if (fetching && !data) return <Loading label="Loading the chat…" />;
  if (!data?.chat) return error ? <ErrorMessage error={error} onRetry={reload} /> : <EmptyState title="This chat is not available" />;
  const messages = data.chatMessages.edges.map((e) => e.node);
  const activeRun = data.runs.edges.map((e) => e.node).find((r) => ACTIVE_RUN_STATUSES.has(r.status));
  const waiting = Boolean(activeRun) || sent.fetching;

  async function submit(event: FormEvent) {
    event.preventDefault();
    const text = body.trim();
    if (!text || waiting) return;
    const result = await send({ chatId, body: text });
    if (!result.error) {
      setBody("");
      reload();
    }
  }

  return (
    <div className="chat" aria-label={`Chat with ${data.chat.agent.name}`}>
      {messages.length === 0 && <p className="muted">Say hello to {data.chat.agent.name}.</p>}
      {messages.map((m) => (
        <div key={m.id} className={m.author?.__typename === "Agent" ? "bubble" : "bubble bubble--user"}>
          <div className="event__meta">{personName(m.author)}</div>
          <div className="comment__body">{m.body}</div>
        </div>
      ))}
      {activeRun && (
        <div aria-label="Reply in progress">
          <Transcript runId={activeRun.id} />
        </div>
      )}
      {error && <ErrorMessage error={error} compact />}
      <Can permission="chat.use">
        <form className="form" onSubmit={submit} aria-label="Message">
          <textarea
            rows={3}
            aria-label="Message"
            value={body}
            onChange={(e) => setBody(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) void submit(e);
            }}
            placeholder={waiting ? `${data.chat.agent.name} is replying…` : "Write a message"}
          />
          {sent.error && <ErrorMessage error={sent.error} compact />}
          <div className="form__actions">
            <button type="submit" className="button button--primary" disabled={waiting || !body.trim()}>
              {waiting ? "Waiting for the reply…" : "Send"}
            </button>
          </div>
        </form>
      </Can>
    </div>
  );
}
