import { Suspense, useState, type ReactNode } from "react";
import { NavLink, useLocation, useNavigate } from "react-router";
import { signOut, useSession } from "./session";
import { useWorkspace } from "./workspace";
import { ErrorBoundary } from "../components/ErrorBoundary";
import { ErrorMessage } from "../components/ErrorMessage";
import { Loading } from "../components/Loading";

const NAV = [
  { to: "board", label: "Board" },
  { to: "inbox", label: "Inbox" },
  { to: "discuss", label: "Discuss" },
  { to: "agents", label: "Agents" },
  { to: "machines", label: "Machines" },
] as const;

/** The frame around every workspace page: skip link, nav, workspace switcher, account menu. */
export function Layout({ children }: { children: ReactNode }) {
  const { user } = useSession();
  const { workspace } = useWorkspace();
  const location = useLocation();
  const [menuOpen, setMenuOpen] = useState(false);
  const [signOutError, setSignOutError] = useState<unknown>(null);
  const base = `/w/${workspace.id}`;

  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <button
          type="button"
          className="topbar__menu button button--ghost"
          aria-expanded={menuOpen}
          aria-controls="primary-nav"
          onClick={() => setMenuOpen((open) => !open)}
        >
          Menu
        </button>
        <span className="topbar__brand">Task Machine</span>
        <WorkspaceSwitcher />
        <span className="topbar__user" title={user.email}>
          {user.name || user.email}
        </span>
        <button
          type="button"
          className="button button--ghost"
          onClick={() => signOut().catch(setSignOutError)}
        >
          Sign out
        </button>
      </header>
      {signOutError !== null && <ErrorMessage error={signOutError} compact />}
      <nav
        id="primary-nav"
        className={menuOpen ? "nav nav--open" : "nav"}
        aria-label="Primary"
        onClick={() => setMenuOpen(false)}
      >
        {NAV.map((item) => (
          <NavLink key={item.to} to={`${base}/${item.to}`} className="nav__link">
            {item.label}
          </NavLink>
        ))}
      </nav>
      <main id="main" className="main" tabIndex={-1}>
        <ErrorBoundary resetKey={location.pathname}>
          <Suspense fallback={<Loading />}>{children}</Suspense>
        </ErrorBoundary>
      </main>
    </div>
  );
}

/** Lists the viewer's workspaces; choosing one keeps the current section (board, inbox, …). */
export function WorkspaceSwitcher() {
  const { workspaces } = useSession();
  const { workspace } = useWorkspace();
  const navigate = useNavigate();
  const location = useLocation();
  if (workspaces.length < 2) {
    return <span className="switcher switcher--single">{workspace.name}</span>;
  }
  const section = location.pathname.split("/")[3] ?? "board";
  const keep = ["board", "inbox", "discuss", "agents", "machines"].includes(section)
    ? section
    : "board";
  return (
    <label className="switcher">
      <span className="visually-hidden">Workspace</span>
      <select
        value={workspace.id}
        onChange={(event) => navigate(`/w/${event.target.value}/${keep}`)}
        aria-label="Workspace"
      >
        {workspaces.map((w) => (
          <option key={w.id} value={w.id}>
            {w.name}
          </option>
        ))}
      </select>
    </label>
  );
}
