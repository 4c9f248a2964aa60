import { graphql } from "../../gql";

export const CommentFields = graphql(`
  fragment CommentFields on Comment {
    id
    body
    createdAt
    parentId
    replyCount
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

/** What changes while a run moves on: what `runChanged` pushes and the run list shows. */
export const RunLiveFields = graphql(`
  fragment RunLiveFields on Run {
    id
    status
    failureCode
    error
    attempt
    maxAttempts
    costUsd
    durationMs
    queueReason
    queuePosition
    diffStat
    cancelRequested
    startedAt
    finishedAt
  }
`);

export const RunFields = graphql(`
  fragment RunFields on Run {
    ...RunLiveFields
    createdAt
    triggerKind
    agent {
      id
      name
    }
    history {
      toStatus
      reason
      createdAt
    }
  }
`);

export const TaskPageDocument = graphql(`
  query TaskPage($taskId: ID!, $workspaceId: ID!) {
    task(id: $taskId) {
      ...BoardTaskFields
      summary
    }
    runs(workspaceId: $workspaceId, filter: { taskId: $taskId }, first: 50) {
      edges {
        node {
          ...RunFields
        }
      }
    }
    timeline(taskId: $taskId, first: 200) {
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
            id
            status
            failureCode
            agent {
              id
              name
            }
          }
          comment {
            ...CommentFields
          }
        }
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

export const RunDocument = graphql(`
  query RunStatus($runId: ID!) {
    run(id: $runId) {
      ...RunFields
    }
  }
`);

/** A run's status, attempt and place in the queue, pushed as they change. */
export const RunChangedDocument = graphql(`
  subscription RunChanged($runId: ID!) {
    runChanged(runId: $runId) {
      ...RunLiveFields
    }
  }
`);

export const CancelRunDocument = graphql(`
  mutation CancelRun($id: ID!) {
    cancelRun(id: $id) {
      ...RunFields
    }
  }
`);

export const RetryRunDocument = graphql(`
  mutation RetryRun($id: ID!) {
    retryRun(id: $id) {
      ...RunFields
    }
  }
`);

/** Persisted chunks first, then live ones, without gap or duplicate (the server guarantees it). */
export const RunTranscriptLiveDocument = graphql(`
  subscription RunTranscriptLive($runId: ID!) {
    runTranscript(runId: $runId) {
      attempt
      seq
      events
    }
  }
`);

export const PostCommentDocument = graphql(`
  mutation PostComment($input: PostCommentInput!) {
    postComment(input: $input) {
      ...CommentFields
    }
  }
`);

export const ReactDocument = graphql(`
  mutation React($commentId: ID!, $emoji: String!, $on: Boolean!) {
    react(commentId: $commentId, emoji: $emoji, on: $on) {
      ...CommentFields
    }
  }
`);
