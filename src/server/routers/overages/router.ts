import { router } from '../../trpc';
import { approveOverageProcedure } from './approve';
import { listOveragesProcedure } from './list';
import { waiveOverageProcedure } from './waive';

export const overagesRouter = router({ list: listOveragesProcedure, approve: approveOverageProcedure, waive: waiveOverageProcedure });
