import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "@urql/core";
import { createClient as createWsClient, type Client as WsClient } from "graphql-ws";

/** The WebSocket URL of the same-origin `/graphql` endpoint (graphql-transport-ws). */
export function graphqlWsUrl(location: Pick<Location, "protocol" | "host">): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/graphql`;
}

export interface ApiClient {
  urql: Client;
  ws: WsClient;
}

/**
 * One urql client for the app: queries and mutations over HTTP (the session cookie rides along,
 * same origin), subscriptions over one lazily opened WebSocket that reconnects by itself.
 */
export function createApiClient(): ApiClient {
  const ws = createWsClient({
    url: graphqlWsUrl(window.location),
    lazy: true,
    retryAttempts: Infinity,
    // Back off to at most ~10 s between reconnects so a restarted server is picked up soon.
    retryWait: async (retries) => {
      const ms = Math.min(10_000, 500 * 2 ** retries) * (0.75 + Math.random() / 2);
      await new Promise((resolve) => setTimeout(resolve, ms));
    },
    shouldRetry: () => true,
  });
  const urql = new Client({
    url: "/graphql",
    fetchOptions: { credentials: "same-origin" },
    preferGetMethod: false,
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query ?? "" };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  return { urql, ws };
}
