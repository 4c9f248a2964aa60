import { useCallback, useEffect, useRef, useState } from "react";
import { useClient, useSubscription } from "urql";
import type { Client, OperationResult } from "urql";
import type {
  BoardTaskFieldsFragment,
  BoardTasksQuery,
  TaskFilter,
} from "../../gql/graphql";
import { BoardChangedDocument, BoardTasksDocument } from "./queries";

/** The server caps a page at 200 (TASKMACHINE_MAX_PAGE_SIZE); later pages ask for that much. */
export const BOARD_PAGE_SIZE = 200;
/**
 * The first page is small so that the board paints sooner (bench/board_paint.mjs: a 200-task
 * first page painted in a median ~830 ms with 500 tasks; see docs/performance.md); the rest
 * streams in behind it.
 */
export const FIRST_PAGE_SIZE = 100;

export type BoardTask = BoardTaskFieldsFragment;

export interface BoardTasksState {
  tasks: BoardTask[];
  totalCount: number;
  /** True until the first page arrived. */
  loading: boolean;
  /** True while later pages are still coming in. */
  loadingMore: boolean;
  error: unknown;
  reload: () => void;
  /** Puts a task the viewer just created or edited in place without waiting for the live event. */
  upsert: (task: BoardTask) => void;
}

type BoardPage = OperationResult<BoardTasksQuery>;
const prefetched = new Map<string, Promise<BoardPage>>();

function fetchPage(client: Client, workspaceId: string, filter: TaskFilter, after: string | null): Promise<BoardPage> {
  return client
    .query(
      BoardTasksDocument,
      // Count once, on the first page: later pages would only repeat it.
      { workspaceId, first: after === null ? FIRST_PAGE_SIZE : BOARD_PAGE_SIZE, after, filter, withCount: after === null },
      { requestPolicy: "network-only" },
    )
    .toPromise();
}

/**
 * Starts loading an unfiltered board's first page at once (before the session check finishes),
 * so that opening the app on a board does not wait for two round trips in a row.
 */
export function prefetchBoard(client: Client, workspaceId: string): void {
  if (!prefetched.has(workspaceId)) prefetched.set(workspaceId, fetchPage(client, workspaceId, {}, null));
}

function takePrefetched(workspaceId: string, filter: TaskFilter): Promise<BoardPage> | null {
  if (Object.keys(filter).length > 0) return null;
  const request = prefetched.get(workspaceId) ?? null;
  prefetched.delete(workspaceId);
  return request;
}

/** Whether a task belongs on a board with this filter (so live changes can move it in or out). */
export function matchesFilter(task: BoardTask, filter: TaskFilter): boolean {
  if (filter.priority?.length && !filter.priority.includes(task.priority)) return false;
  if (filter.status?.length && !filter.status.includes(task.status)) return false;
  if (filter.projectId && task.project?.id !== filter.projectId) return false;
  const agentId = task.assignee?.__typename === "Agent" ? task.assignee.id : null;
  const userId = task.assignee?.__typename === "User" ? task.assignee.id : null;
  if (filter.assigneeUserId && userId !== filter.assigneeUserId) return false;
  if (filter.assigneeAgentId && agentId !== filter.assigneeAgentId) return false;
  return true;
}

/**
 * Every task on the board: pages through the connection (the first page paints at once, the
 * rest follow), then keeps the list current from `boardChanged`, so another browser's change
 * shows without a reload.
 */
export function useBoardTasks(workspaceId: string, filter: TaskFilter): BoardTasksState {
  const client = useClient();
  const [tasks, setTasks] = useState<BoardTask[]>([]);
  const [totalCount, setTotalCount] = useState(0);
  const [loading, setLoading] = useState(true);
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [generation, setGeneration] = useState(0);
  const filterKey = JSON.stringify(filter);
  const filterRef = useRef(filter);
  filterRef.current = filter;

  useEffect(() => {
    let cancelled = false;
    const currentFilter = JSON.parse(filterKey) as TaskFilter;
    // One cursor walk, page after page: measured here, parallel per-column requests were slower
    // (the server answers them one after another, each with its own count).
    async function load() {
      setLoading(true);
      setError(null);
      let after: string | null = null;
      let loaded: BoardTask[] = [];
      for (;;) {
        const early = after === null ? takePrefetched(workspaceId, currentFilter) : null;
        const result: BoardPage = await (early ?? fetchPage(client, workspaceId, currentFilter, after));
        if (cancelled) return;
        if (result.error || !result.data) {
          setError(result.error ?? new Error("The server sent no tasks."));
          setLoading(false);
          setLoadingMore(false);
          return;
        }
        const connection = result.data.tasks;
        const seen = new Set(loaded.map((t) => t.id));
        loaded = loaded.concat(connection.edges.map((edge) => edge.node).filter((t) => !seen.has(t.id)));
        setTasks(loaded);
        if (typeof connection.totalCount === "number") setTotalCount(connection.totalCount);
        setLoading(false);
        if (!connection.pageInfo.hasNextPage || !connection.pageInfo.endCursor) break;
        setLoadingMore(true);
        after = connection.pageInfo.endCursor;
      }
      setLoadingMore(false);
    }
    void load();
    return () => {
      cancelled = true;
    };
  }, [client, workspaceId, filterKey, generation]);

  const upsert = useCallback((task: BoardTask) => {
    setTasks((previous) => {
      const inFilter = matchesFilter(task, filterRef.current);
      const index = previous.findIndex((t) => t.id === task.id);
      if (index === -1) return inFilter ? [task, ...previous] : previous;
      if (!inFilter) return previous.filter((t) => t.id !== task.id);
      const next = previous.slice();
      next[index] = task;
      return next;
    });
  }, []);

  const [live] = useSubscription({ query: BoardChangedDocument, variables: { workspaceId } });
  const lastEvent = useRef<unknown>(null);
  useEffect(() => {
    const change = live.data?.boardChanged;
    if (!change || change === lastEvent.current) return;
    lastEvent.current = change;
    upsert(change.task);
  }, [live.data, upsert]);

  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { tasks, totalCount, loading, loadingMore, error, reload, upsert };
}
