"""The GraphQL API: types, inputs and resolvers by domain, composed in taskmachine.schema.root."""
