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

export const BoardOptionsDocument = graphql(`
  query BoardOptions($workspaceId: ID!) {
    workspace(id: $workspaceId) {
      id
      members {
        id
        name
        email
      }
      agents {
        id
        name
      }
      projects {
        id
        name
      }
    }
  }
`);

export const BoardTasksDocument = graphql(`
  query BoardTasks($workspaceId: ID!, $first: Int!, $after: String, $filter: TaskFilter) {
    workspace(id: $workspaceId) {
      id
      tasks(first: $first, after: $after, filter: $filter) {
        totalCount
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
  }
`);

export const BoardChangedDocument = graphql(`
  subscription BoardChanged($workspaceId: ID!) {
    boardChanged(workspaceId: $workspaceId) {
      taskId
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
