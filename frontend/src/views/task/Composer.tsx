import { useId, useLayoutEffect, useMemo, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { useMutation } from "urql";
import { ErrorMessage } from "../../components/ErrorMessage";
import { PostCommentDocument } from "./queries";

export interface Mentionable {
  id: string;
  name: string;
  handle: string;
  kind: "agent" | "team";
}

/** The `@word` the caret is in, if any. */
export function mentionQuery(text: string, caret: number): { start: number; query: string } | null {
  const before = text.slice(0, caret);
  const match = /(^|\s)@([\w.-]*)$/.exec(before);
  if (!match) return null;
  return { start: caret - match[2]!.length - 1, query: match[2]!.toLowerCase() };
}

/** Agents and teams whose `@handle` appears in the text (the server is told by id). */
export function taggedIn(text: string, mentionables: Mentionable[]): Mentionable[] {
  const handles = new Set([...text.matchAll(/(?:^|\s)@([\w.-]+)/g)].map((m) => m[1]!.toLowerCase()));
  return mentionables.filter((m) => handles.has(m.handle.toLowerCase()));
}

interface Props {
  taskId: string;
  parentId?: string;
  mentionables: Mentionable[];
  onPosted: () => void;
  placeholder?: string;
  autoFocus?: boolean;
}

/** Comment box; typing `@` suggests agents and teams to tag (arrow keys + Enter, or click). */
export function Composer({ taskId, parentId, mentionables, onPosted, placeholder, autoFocus }: Props) {
  const [body, setBody] = useState("");
  const [caret, setCaret] = useState(0);
  const [active, setActive] = useState(0);
  const [{ fetching, error }, post] = useMutation(PostCommentDocument);
  const input = useRef<HTMLTextAreaElement>(null);
  // After inserting a tag, put the caret behind it once the new text is on screen.
  const placeCaret = useRef<number | null>(null);
  useLayoutEffect(() => {
    if (placeCaret.current === null || !input.current) return;
    input.current.focus();
    input.current.setSelectionRange(placeCaret.current, placeCaret.current);
    placeCaret.current = null;
  }, [body]);
  const listId = useId();

  const mention = mentionQuery(body, caret);
  const suggestions = useMemo(() => {
    if (!mention) return [];
    return mentionables
      .filter((m) => m.handle.toLowerCase().startsWith(mention.query) || m.name.toLowerCase().startsWith(mention.query))
      .slice(0, 8);
  }, [mention?.query, mention !== null, mentionables]);

  function insert(target: Mentionable) {
    if (!mention) return;
    const next = `${body.slice(0, mention.start)}@${target.handle} ${body.slice(caret)}`;
    const position = mention.start + target.handle.length + 2;
    setBody(next);
    setCaret(position);
    setActive(0);
    placeCaret.current = position;
  }

  function onKeyDown(event: KeyboardEvent<HTMLTextAreaElement>) {
    if (suggestions.length > 0) {
      if (event.key === "ArrowDown") {
        event.preventDefault();
        setActive((a) => (a + 1) % suggestions.length);
        return;
      }
      if (event.key === "ArrowUp") {
        event.preventDefault();
        setActive((a) => (a - 1 + suggestions.length) % suggestions.length);
        return;
      }
      if (event.key === "Enter" || event.key === "Tab") {
        event.preventDefault();
        insert(suggestions[Math.min(active, suggestions.length - 1)]!);
        return;
      }
      if (event.key === "Escape") {
        setCaret(-1);
        return;
      }
    }
    if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) {
      event.preventDefault();
      void submit();
    }
  }

  async function submit(event?: FormEvent) {
    event?.preventDefault();
    const text = body.trim();
    if (!text || fetching) return;
    const tagged = taggedIn(text, mentionables);
    const result = await post({
      input: {
        taskId,
        body: text,
        parentId: parentId ?? null,
        agentIds: tagged.filter((m) => m.kind === "agent").map((m) => m.id),
        teamIds: tagged.filter((m) => m.kind === "team").map((m) => m.id),
      },
    });
    if (!result.error) {
      setBody("");
      onPosted();
    }
  }

  return (
    <form className="composer" onSubmit={submit} aria-label={parentId ? "Reply" : "Comment"}>
      <textarea
        ref={input}
        rows={parentId ? 2 : 3}
        value={body}
        autoFocus={autoFocus}
        placeholder={placeholder ?? "Write a comment. Type @ to tag an agent or a team."}
        aria-label={parentId ? "Reply" : "Comment"}
        aria-autocomplete="list"
        aria-controls={suggestions.length ? listId : undefined}
        aria-expanded={suggestions.length > 0}
        onChange={(e) => {
          setBody(e.target.value);
          setCaret(e.target.selectionStart);
          setActive(0);
        }}
        onSelect={(e) => setCaret(e.currentTarget.selectionStart)}
        onKeyDown={onKeyDown}
      />
      {suggestions.length > 0 && (
        <ul id={listId} className="list panel" role="listbox" aria-label="Tag an agent or team">
          {suggestions.map((m, index) => (
            <li
              key={m.id}
              role="option"
              aria-selected={index === active}
              className={index === active ? "suggestion suggestion--active" : "suggestion"}
              onMouseDown={(e) => {
                e.preventDefault();
                insert(m);
              }}
            >
              @{m.handle} <span className="muted">{m.name} · {m.kind}</span>
            </li>
          ))}
        </ul>
      )}
      {error && <ErrorMessage error={error} compact />}
      <div className="form__actions">
        <button type="submit" className="button button--primary" disabled={fetching || !body.trim()}>
          {fetching ? "Posting…" : parentId ? "Reply" : "Comment"}
        </button>
      </div>
    </form>
  );
}
