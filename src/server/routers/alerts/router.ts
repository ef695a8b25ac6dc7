import { router } from '../../trpc';
import { listAlertsProcedure } from './list';

export const alertsRouter = router({ list: listAlertsProcedure });
