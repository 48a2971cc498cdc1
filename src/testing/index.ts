/**
 * Test utilities: a local Supabase-like stack (PostgreSQL or PGlite, PostgREST, the sync
 * migration) and its building blocks.
 */
export { startLocalStack, findPostgrest } from './localStack.js'
export type { LocalStack, LocalStackOptions, SignJwtOptions, StackClientOptions } from './localStack.js'
export { startGateway } from './gateway.js'
export type { Gateway, GatewayOptions, GatewayUser } from './gateway.js'
export { API_ROLES, AUTH_SCHEMA_SQL, DEMO_SCHEMA_SQL, rolesSql } from './bootstrap.js'
