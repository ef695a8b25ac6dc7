import { router } from '../../trpc';
import { createApiKeyProcedure } from './create';
import { listApiKeysProcedure } from './list';
import { meProcedure } from './me';
import { revokeApiKeyProcedure } from './revoke';

export const apiKeysRouter = router({
  create: createApiKeyProcedure,
  list: listApiKeysProcedure,
  me: meProcedure,
  revoke: revokeApiKeyProcedure,
});
