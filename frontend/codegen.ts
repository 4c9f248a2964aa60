import type { CodegenConfig } from "@graphql-codegen/cli";

// Offline: the schema is the published SDL file beside the server, never a live endpoint.
const config: CodegenConfig = {
  // TASKMACHINE_SCHEMA lets a developer point at another SDL file; the default is the published one.
  schema: process.env.TASKMACHINE_SCHEMA ?? "../schema.graphql",
  documents: ["src/**/*.{ts,tsx}", "!src/gql/**/*"],
  ignoreNoDocuments: true,
  errorsOnly: true,
  generates: {
    "./src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        skipTypename: false,
        scalars: { ID: "string", UUID: "string", DateTime: "string", JSON: "unknown", Decimal: "string" },
      },
    },
  },
};

export default config;
