import { ensureUsageEventPartitions } from '../../src/domain/usage/partitions';
import type { JobHandler } from './types';

export const maintainPartitions: JobHandler<'usage.partitions.maintain'> = async ({ pool }) => ({
  rowsTouched: 0,
  partitionsCreated: await ensureUsageEventPartitions(pool, new Date()),
});
