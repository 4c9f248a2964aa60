import { CombinedError } from "@urql/core";

/** A problem the user should read: a title, a sentence, and the API's error code if any. */
export interface ReadableError {
  code: string;
  title: string;
  message: string;
}

const TITLES: Record<string, string> = {
  UNAUTHENTICATED: "You are signed out",
  FORBIDDEN: "Not allowed",
  NOT_FOUND: "Not found",
  BAD_USER_INPUT: "Please check your input",
  CONFLICT: "Changed meanwhile",
  NETWORK: "Cannot reach the server",
  INTERNAL: "Something went wrong",
};

/** Every GraphQL error code in a combined error (from `extensions.code`). */
export function errorCodes(error: CombinedError | undefined | null): string[] {
  if (!error) return [];
  const codes = error.graphQLErrors.map((e) => String(e.extensions?.code ?? "INTERNAL"));
  if (error.networkError) codes.push("NETWORK");
  return codes;
}

export function hasCode(error: CombinedError | undefined | null, code: string): boolean {
  return errorCodes(error).includes(code);
}

/** Turns whatever went wrong into words; never returns an empty message. */
export function readableError(error: unknown): ReadableError {
  if (error instanceof CombinedError) {
    if (error.networkError) {
      return {
        code: "NETWORK",
        title: TITLES.NETWORK!,
        message: "The server did not answer. Check your connection; the page retries when you do.",
      };
    }
    const first = error.graphQLErrors[0];
    const code = String(first?.extensions?.code ?? "INTERNAL");
    const messages = error.graphQLErrors.map((e) => e.message).filter(Boolean);
    return {
      code,
      title: TITLES[code] ?? TITLES.INTERNAL!,
      message: messages.join(" ") || "The server reported an error without a message.",
    };
  }
  if (error instanceof Error) {
    return { code: "INTERNAL", title: TITLES.INTERNAL!, message: error.message || String(error) };
  }
  return { code: "INTERNAL", title: TITLES.INTERNAL!, message: String(error) };
}
