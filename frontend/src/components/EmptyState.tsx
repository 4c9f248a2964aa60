import type { ReactNode } from "react";

interface Props {
  title: string;
  children?: ReactNode;
}

/** What a list or a page shows when there is nothing (or nothing this role may see). */
export function EmptyState({ title, children }: Props) {
  return (
    <div className="empty" data-testid="empty-state">
      <p className="empty__title">{title}</p>
      {children && <div className="empty__body">{children}</div>}
    </div>
  );
}
