import { Suspense, lazy, useMemo, useState } from "react";
import { BrowserRouter, Navigate, Route, Routes, useParams } from "react-router";
import { Provider } from "urql";
import { createApiClient } from "../lib/client";
import { ErrorBoundary } from "../components/ErrorBoundary";
import { EmptyState } from "../components/EmptyState";
import { SessionGate, takeReturnPath, useSession } from "./session";
import { WorkspaceProvider, lastWorkspace, rememberWorkspace } from "./workspace";
import { Layout } from "./Layout";
import { Board } from "../views/board/Board";
import { prefetchBoard } from "../views/board/useBoardTasks";
import { Loading } from "../components/Loading";

// The board is in the main bundle (it is the first thing most people open); the other views load
// on first visit, which keeps the board's first paint small.
const TaskPage = lazy(() => import("../views/task/TaskPage").then((m) => ({ default: m.TaskPage })));
const Inbox = lazy(() => import("../views/inbox/Inbox").then((m) => ({ default: m.Inbox })));
const Discuss = lazy(() => import("../views/discuss/Discuss").then((m) => ({ default: m.Discuss })));
const Agents = lazy(() => import("../views/agents/Agents").then((m) => ({ default: m.Agents })));
const Machines = lazy(() => import("../views/machines/Machines").then((m) => ({ default: m.Machines })));
const MachineApproval = lazy(() =>
  import("../views/machines/MachineApproval").then((m) => ({ default: m.MachineApproval })),
);

export function App() {
  const client = useMemo(() => {
    const api = createApiClient().urql;
    const onBoard = /^\/w\/([0-9a-fA-F-]{36})\/board\/?$/.exec(window.location.pathname);
    if (onBoard && !window.location.search) prefetchBoard(api, onBoard[1]!);
    return api;
  }, []);
  return (
    <ErrorBoundary>
      <Provider value={client}>
        <BrowserRouter>
          <SessionGate>
            <Suspense fallback={<Loading />}>
              <AppRoutes />
            </Suspense>
          </SessionGate>
        </BrowserRouter>
      </Provider>
    </ErrorBoundary>
  );
}

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/" element={<Home />} />
      <Route path="/machines/approve" element={<MachineApproval />} />
      <Route path="/w/:workspaceId/*" element={<WorkspaceRoutes />} />
      <Route path="*" element={<NotFound />} />
    </Routes>
  );
}

function Home() {
  const { workspaces } = useSession();
  const [returnTo] = useState(takeReturnPath);
  if (returnTo) return <Navigate to={returnTo} replace />;
  const remembered = lastWorkspace();
  const target = workspaces.find((w) => w.id === remembered) ?? workspaces[0];
  if (!target) {
    return (
      <main className="page">
        <EmptyState title="You are not in a workspace yet">
          Ask a workspace owner to invite this address.
        </EmptyState>
      </main>
    );
  }
  return <Navigate to={`/w/${target.id}/board`} replace />;
}

function WorkspaceRoutes() {
  const { workspaceId } = useParams();
  const { workspaces } = useSession();
  const workspace = workspaces.find((w) => w.id === workspaceId);
  if (!workspace) {
    return (
      <main className="page">
        <EmptyState title="This workspace is not available">
          It does not exist or you are not a member. <a href="/">Go to your workspaces</a>.
        </EmptyState>
      </main>
    );
  }
  rememberWorkspace(workspace.id);
  return (
    <WorkspaceProvider workspace={workspace}>
      <Layout>
        <Routes>
          <Route index element={<Navigate to="board" replace />} />
          <Route path="board" element={<Board />} />
          <Route path="tasks/:taskId" element={<TaskPage />} />
          <Route path="inbox" element={<Inbox />} />
          <Route path="discuss" element={<Discuss />} />
          <Route path="discuss/:chatId" element={<Discuss />} />
          <Route path="agents" element={<Agents />} />
          <Route path="agents/:agentId" element={<Agents />} />
          <Route path="machines" element={<Machines />} />
          <Route path="*" element={<NotFound />} />
        </Routes>
      </Layout>
    </WorkspaceProvider>
  );
}

function NotFound() {
  return (
    <div className="page">
      <EmptyState title="Page not found">
        <a href="/">Back to the board</a>
      </EmptyState>
    </div>
  );
}
