import { graphql } from "../../gql";

export const CommentFields = graphql(`
  fragment CommentFields on Comment {
    id
    body
    createdAt
    parentId
    author {
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
    reactions {
      emoji
      count
      viewerReacted
    }
  }
`);

export const RunFields = graphql(`
  fragment RunFields on Run {
    id
    status
    queueReason
    failureCode
    error
    attempt
    costUsd
    durationMs
    createdAt
    agent {
      id
      name
    }
  }
`);

export const TaskPageDocument = graphql(`
  query TaskPage($taskId: ID!, $workspaceId: ID!) {
    task(id: $taskId) {
      ...BoardTaskFields
      runs {
        ...RunFields
      }
      timeline(first: 200) {
        totalCount
        edges {
          node {
            id
            kind
            createdAt
            data
            actor {
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
            run {
              ...RunFields
            }
            comment {
              ...CommentFields
              replies {
                ...CommentFields
              }
            }
          }
        }
      }
    }
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
        handle
      }
      teams {
        id
        name
        handle
      }
      projects {
        id
        name
      }
    }
  }
`);

export const TaskTimelineDocument = graphql(`
  subscription TaskTimeline($taskId: ID!) {
    taskTimeline(taskId: $taskId) {
      id
      kind
    }
  }
`);

export const RunTranscriptDocument = graphql(`
  query RunTranscript($runId: ID!) {
    run(id: $runId) {
      ...RunFields
      transcript {
        seq
        kind
        text
        toolName
        input
        output
        isError
        costUsd
        durationMs
      }
    }
  }
`);

export const RunTranscriptLiveDocument = graphql(`
  subscription RunTranscriptLive($runId: ID!) {
    runTranscript(runId: $runId) {
      seq
      kind
      text
      toolName
      input
      output
      isError
      costUsd
      durationMs
    }
  }
`);

export const PostCommentDocument = graphql(`
  mutation PostComment($taskId: ID!, $body: String!, $parentId: ID) {
    postComment(taskId: $taskId, body: $body, parentId: $parentId) {
      ...CommentFields
    }
  }
`);

export const ReactDocument = graphql(`
  mutation React($commentId: ID!, $emoji: String!) {
    react(commentId: $commentId, emoji: $emoji) {
      ...CommentFields
    }
  }
`);

export const CancelRunDocument = graphql(`
  mutation CancelRun($runId: ID!) {
    cancelRun(runId: $runId) {
      ...RunFields
    }
  }
`);

export const RetryRunDocument = graphql(`
  mutation RetryRun($runId: ID!) {
    retryRun(runId: $runId) {
      ...RunFields
    }
  }
`);
