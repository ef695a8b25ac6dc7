import { z } from 'zod';

export const jobRunOutput = z.object({
  id: z.string(),
  jobId: z.string(),
  name: z.string(),
  window: z.string().nullable(),
  status: z.enum(['active', 'completed', 'failed']),
  attempts: z.number(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  durationMs: z.number().nullable(),
  rowsTouched: z.number(),
  error: z.string().nullable(),
  result: z.unknown(),
});
