import { graphql } from "../../gql";

export const MachinesDocument = graphql(`
  query Machines($workspaceId: ID!) {
    workspace(id: $workspaceId) {
      id
      machines {
        id
        name
        hostname
        os
        online
        lastHeartbeatAt
        cliVersion
        updateAvailable
        updateStatus
        executionRoot
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
      id
      updateStatus
    }
  }
`);

export const RemoveMachineDocument = graphql(`
  mutation RemoveMachine($machineId: ID!) {
    removeMachine(machineId: $machineId)
  }
`);

export const MachineApprovalDocument = graphql(`
  query MachineApprovalRequest($userCode: String!) {
    machineApproval(userCode: $userCode) {
      id
      userCode
      name
      hostname
      os
      cliVersion
      status
      expiresAt
    }
  }
`);

export const ApproveMachineDocument = graphql(`
  mutation ApproveMachine($userCode: String!, $workspaceIds: [ID!]!) {
    approveMachine(userCode: $userCode, workspaceIds: $workspaceIds) {
      id
      status
    }
  }
`);

export const DenyMachineDocument = graphql(`
  mutation DenyMachine($userCode: String!) {
    denyMachine(userCode: $userCode) {
      id
      status
    }
  }
`);
