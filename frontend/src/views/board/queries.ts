import { graphql } from "../../gql";

export const BoardTaskFields = graphql(`
  fragment BoardTaskFields on Task {
    id
    number
    title
    description
    status
    priority
    updatedAt
    project {
      id
      name
    }
    assignee {
      __typename
      ... on User {
        id
        name
        email
      }
      ... on Agent {
        id
        name
      }
    }
  }
`);

/** People, agents, teams and projects: what the board's filters and the editors choose from. */
export const BoardOptionsDocument = graphql(`
  query BoardOptions($workspaceId: ID!) {
    members(workspaceId: $workspaceId, first: 200) {
      edges {
        node {
          id
          user {
            id
            name
            email
          }
        }
      }
    }
    agents(workspaceId: $workspaceId, first: 200) {
      edges {
        node {
          id
          name
          handle
        }
      }
    }
    teams(workspaceId: $workspaceId, first: 200) {
      edges {
        node {
          id
          name
          handle
        }
      }
    }
    projects(workspaceId: $workspaceId, first: 200) {
      edges {
        node {
          id
          name
        }
      }
    }
  }
`);

export const BoardTasksDocument = graphql(`
  query BoardTasks($workspaceId: ID!, $first: Int!, $after: String, $filter: TaskFilter, $withCount: Boolean! = true) {
    tasks(workspaceId: $workspaceId, first: $first, after: $after, filter: $filter) {
      totalCount @include(if: $withCount)
      pageInfo {
        hasNextPage
        endCursor
      }
      edges {
        node {
          ...BoardTaskFields
        }
      }
    }
  }
`);

export const BoardChangedDocument = graphql(`
  subscription BoardChanged($workspaceId: ID!) {
    boardChanged(workspaceId: $workspaceId) {
      kind
      task {
        ...BoardTaskFields
      }
    }
  }
`);

export const CreateTaskDocument = graphql(`
  mutation CreateTask($input: CreateTaskInput!) {
    createTask(input: $input) {
      ...BoardTaskFields
    }
  }
`);

export const UpdateTaskDocument = graphql(`
  mutation UpdateTask($input: UpdateTaskInput!) {
    updateTask(input: $input) {
      ...BoardTaskFields
    }
  }
`);

export const SetTaskStatusDocument = graphql(`
  mutation SetTaskStatus($taskId: ID!, $status: TaskStatus!) {
    setTaskStatus(taskId: $taskId, status: $status) {
      ...BoardTaskFields
    }
  }
`);

export const SetTaskPriorityDocument = graphql(`
  mutation SetTaskPriority($taskId: ID!, $priority: TaskPriority!) {
    setTaskPriority(taskId: $taskId, priority: $priority) {
      ...BoardTaskFields
    }
  }
`);

export const AssignTaskDocument = graphql(`
  mutation AssignTask($input: AssignTaskInput!) {
    assignTask(input: $input) {
      ...BoardTaskFields
    }
  }
`);
