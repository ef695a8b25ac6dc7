import { router } from '../../trpc';
import { createApiKeyProcedure } from './create';
import { listApiKeysProcedure } from './list';
import { revokeApiKeyProcedure } from './revoke';

export const apiKeysRouter = router({
  create: createApiKeyProcedure,
  list: listApiKeysProcedure,
  revoke: revokeApiKeyProcedure,
});
