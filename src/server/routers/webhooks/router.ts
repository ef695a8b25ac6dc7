import { router } from '../../trpc';
import { createWebhookProcedure } from './create';
import { deleteWebhookProcedure } from './delete';
import { webhookDeliveriesProcedure } from './deliveries';
import { listWebhooksProcedure } from './list';
import { rotateWebhookSecretProcedure } from './rotate-secret';
import { updateWebhookProcedure } from './update';

export const webhooksRouter = router({
  create: createWebhookProcedure,
  list: listWebhooksProcedure,
  update: updateWebhookProcedure,
  delete: deleteWebhookProcedure,
  rotateSecret: rotateWebhookSecretProcedure,
  deliveries: webhookDeliveriesProcedure,
});
