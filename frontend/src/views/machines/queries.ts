import { graphql } from "../../gql";

export const MachineFields = graphql(`
  fragment MachineFields on Machine {
    id
    name
    hostname
    os
    online
    lastHeartbeatAt
    cliVersion
    updateStatus
    updateDetail
    latestCliVersion
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
`);

export const MachinesDocument = graphql(`
  query Machines($workspaceId: ID!) {
    machines(workspaceId: $workspaceId, first: 200) {
      edges {
        node {
          ...MachineFields
        }
      }
    }
  }
`);

export const MachinesChangedDocument = graphql(`
  subscription MachinesChanged($workspaceId: ID!) {
    machinesChanged(workspaceId: $workspaceId) {
      machineId
    }
  }
`);

export const SetRuntimeEnabledDocument = graphql(`
  mutation SetRuntimeEnabled($runtimeId: ID!, $enabled: Boolean!) {
    setRuntimeEnabled(runtimeId: $runtimeId, enabled: $enabled) {
      id
      enabled
      ready
    }
  }
`);

export const RequestMachineUpdateDocument = graphql(`
  mutation RequestMachineUpdate($machineId: ID!) {
    requestMachineUpdate(machineId: $machineId) {
      ...MachineFields
    }
  }
`);

export const RemoveMachineDocument = graphql(`
  mutation RemoveMachine($machineId: ID!) {
    removeMachine(machineId: $machineId)
  }
`);

export const MachineApprovalDocument = graphql(`
  query MachineApprovalRequest($code: String!) {
    machineApproval(code: $code) {
      userCode
      name
      hostname
      os
      cliVersion
      status
      expiresAt
      machineId
    }
  }
`);

export const ApproveMachineDocument = graphql(`
  mutation ApproveMachine($code: String!, $workspaceIds: [ID!]!) {
    approveMachine(code: $code, workspaceIds: $workspaceIds) {
      userCode
      status
    }
  }
`);

export const DenyMachineDocument = graphql(`
  mutation DenyMachine($code: String!) {
    denyMachine(code: $code) {
      userCode
      status
    }
  }
`);
