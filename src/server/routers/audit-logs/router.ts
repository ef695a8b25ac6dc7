import { router } from '../../trpc';
import { listAuditLogsProcedure } from './list';

export const auditLogsRouter = router({ list: listAuditLogsProcedure });
