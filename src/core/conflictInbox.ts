import { z } from 'zod'

const row = z.record(z.string(), z.unknown())

/** Validates a persisted conflict-inbox entry (`c/<id>`). */
export const conflictSchema = z.object({
  id: z.string(),
  collection: z.string(),
  recordId: z.string(),
  local: row.nullable(),
  remote: row.nullable(),
  base: row.nullable(),
  detectedAt: z.number(),
  remoteVersion: z.number().int().nullable(),
  remoteDeleted: z.boolean(),
  remoteHlc: z.string().nullable(),
})
