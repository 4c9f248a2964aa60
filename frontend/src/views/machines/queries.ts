import { graphql } from "../../gql";

export const MachinesDocument = graphql(`
  query Machines($workspaceId: ID!) {
    machines(workspaceId: $workspaceId, first: 200) {
      edges {
        node {
          id
          name
          hostname
          os
          online
          lastHeartbeatAt
          cliVersion
          updateStatus
          executionRoot
          capacity
          activeRuns
          runtimes {
            id
            name
            provider
            version
            path
            available
            enabled
            ready
          }
        }
      }
    }
  }
`);
